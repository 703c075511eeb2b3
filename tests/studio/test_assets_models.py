"""Models pages: list, detail, and registration from uploads or a server path."""

from __future__ import annotations

import io
import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from studio.models import ModelAsset
from studio.samples import save_sklearn_model
from studio.services.assets import register_model
from tests.factories import zip_of

ROLES = [
    ("owner", 200),
    ("contributor", 200),
    ("reader", 200),
    ("outsider", 404),
]


@pytest.fixture(scope="session")
def mlflow_model(tmp_path_factory) -> Path:
    """A real two-tree MLflow model, trained once for the whole session."""
    return save_sklearn_model(
        tmp_path_factory.mktemp("mlflow") / "model", n_estimators=2
    )


def model_zip(folder: Path, name: str = "model.zip") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, zip_of(folder))


def snapshot() -> tuple[int, list[str]]:
    """Rows and every path in the datastore: a refusal must change neither."""
    root = Path(django_settings.STUDIO_DATASTORE)
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    return ModelAsset.objects.count(), paths


def url(name: str, *args: object, workspace: str = "team") -> str:
    return reverse(f"studio:{name}", args=[workspace, *args])


def post_register(cast, data: dict, who: str = "contributor"):
    return cast.client(who).post(url("model-register"), data)


@pytest.fixture
def registered(cast, tmp_path, mlflow_model) -> ModelAsset:
    shutil.copytree(mlflow_model, tmp_path / "server" / "clf")
    return register_model(
        cast.workspace,
        cast.owner,
        name="clf",
        server_path=str(tmp_path / "server" / "clf"),
    )


@pytest.mark.parametrize(("who", "status"), ROLES)
def test_it_shows_the_list_and_detail_to_members_only(cast, registered, who, status):
    client = cast.client(who)

    assert client.get(url("model-list")).status_code == status
    assert client.get(url("model-detail", "clf", 1)).status_code == status


@pytest.mark.parametrize(
    ("who", "status"),
    [("owner", 200), ("contributor", 200), ("reader", 403), ("outsider", 404)],
)
def test_it_shows_the_register_form_to_contributors_and_up(cast, who, status):
    assert cast.client(who).get(url("model-register")).status_code == status


@pytest.mark.parametrize(
    ("who", "status"),
    [("owner", 302), ("contributor", 302), ("reader", 403), ("outsider", 404)],
)
def test_it_lets_only_contributors_and_up_register(cast, mlflow_model, who, status):
    response = post_register(
        cast, {"name": "clf", "files": model_zip(mlflow_model)}, who
    )

    assert response.status_code == status
    assert ModelAsset.objects.count() == (1 if status == 302 else 0)


@pytest.mark.parametrize("name", ["model-list", "model-register"])
def test_it_sends_anonymous_visitors_to_sign_in(client, cast, name):
    response = client.get(url(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_hides_an_unknown_version(cast, registered):
    assert cast.client("reader").get(url("model-detail", "clf", 9)).status_code == 404


def test_it_registers_an_mlflow_model_from_a_zip(cast, mlflow_model):
    response = post_register(
        cast, {"name": "clf", "files": model_zip(mlflow_model), "tags": "team=fraud"}
    )

    model = ModelAsset.objects.get()
    assert response["Location"] == url("model-detail", "clf", 1)
    assert (model.type, model.source, model.tags) == (
        "mlflow_model",
        "upload",
        {"team": "fraud"},
    )
    assert (
        Path(model.path) == Path(django_settings.STUDIO_DATASTORE) / "team/models/clf/1"
    )
    assert (Path(model.path) / "MLmodel").is_file()
    assert model.created_by == cast.contributor


def test_it_shows_flavors_signature_requirements_and_files(cast, mlflow_model):
    post_register(cast, {"name": "clf", "files": model_zip(mlflow_model)})

    page = cast.client("reader").get(url("model-detail", "clf", 1)).content.decode()

    assert "sklearn" in page and "python_function" in page
    assert "<td>f0</td><td><code>double</code></td>" in page
    assert "<td>f3</td>" in page
    assert "Signature outputs" in page and "<code>int64</code>" in page
    assert "shape [-1]" in page
    assert "scikit-learn==" in page
    assert "<code>MLmodel</code>" in page and "<code>requirements.txt</code>" in page


def test_it_numbers_versions_per_name(cast, mlflow_model):
    for name in ("clf", "clf", "other"):
        post_register(cast, {"name": name, "files": model_zip(mlflow_model)})

    versions = list(
        ModelAsset.objects.order_by("name", "version").values_list("name", "version")
    )
    page = cast.client("reader").get(url("model-list")).content.decode()
    detail = cast.client("reader").get(url("model-detail", "clf", 1)).content.decode()

    assert versions == [("clf", 1), ("clf", 2), ("other", 1)]
    assert f'href="{url("model-detail", "clf", 2)}">clf</a>' in page
    assert "<td>2</td>\n          <td>2</td>" in page  # latest version, count
    assert url("model-detail", "clf", 2) in detail


def test_it_registers_plain_files_as_they_are(cast, mlflow_model):
    files = [
        SimpleUploadedFile(p.name, p.read_bytes())
        for p in sorted(mlflow_model.iterdir())
    ]

    post_register(cast, {"name": "clf", "files": files})

    model = ModelAsset.objects.get()
    assert model.type == "mlflow_model"
    assert sorted(p.name for p in Path(model.path).iterdir()) == sorted(
        p.name for p in mlflow_model.iterdir()
    )


def test_it_keeps_the_layout_of_a_folder_upload(cast):
    folder = [
        SimpleUploadedFile("weights.bin", b"\x00\x01"),
        SimpleUploadedFile("__init__.py", b""),
    ]
    paths = ["my-model/weights.bin", "my-model/pkg/__init__.py"]

    response = post_register(
        cast, {"name": "net", "folder": folder, "relative_paths": json.dumps(paths)}
    )

    model = ModelAsset.objects.get()
    assert response.status_code == 302
    assert model.type == "custom_model"
    assert (Path(model.path) / "pkg" / "__init__.py").read_bytes() == b""
    assert (Path(model.path) / "weights.bin").read_bytes() == b"\x00\x01"


def test_it_registers_a_server_path_in_place(cast, tmp_path, mlflow_model):
    shutil.copytree(mlflow_model, tmp_path / "server" / "clf")
    before = snapshot()[1]

    response = post_register(
        cast, {"name": "clf", "server_path": str(tmp_path / "server" / "clf")}
    )

    model = ModelAsset.objects.get()
    assert response.status_code == 302
    assert (model.type, model.path) == (
        "mlflow_model",
        str(tmp_path / "server" / "clf"),
    )
    assert model.mlflow["flavors"] == ["python_function", "sklearn"]
    assert snapshot()[1] == before


def test_it_registers_a_custom_model_file_from_a_server_path(cast, tmp_path):
    (tmp_path / "server" / "model.pkl").write_bytes(b"pickle")

    post_register(
        cast,
        {
            "name": "pkl",
            "type": "custom_model",
            "server_path": str(tmp_path / "server" / "model.pkl"),
        },
    )

    model = ModelAsset.objects.get()
    assert model.type == "custom_model"
    page = cast.client("reader").get(url("model-detail", "pkl", 1)).content.decode()
    assert "<code>model.pkl</code>" in page and "6 B" in page


def test_it_registers_past_a_folder_left_by_a_failed_registration(cast, mlflow_model):
    orphan = Path(django_settings.STUDIO_DATASTORE) / "team" / "models" / "clf" / "1"
    orphan.mkdir(parents=True)

    response = post_register(cast, {"name": "clf", "files": model_zip(mlflow_model)})

    model = ModelAsset.objects.get()
    assert response.status_code == 302
    assert model.version == 1
    assert Path(model.path).parent == orphan.parent and Path(model.path) != orphan
    assert (Path(model.path) / "MLmodel").is_file()


def zip_with(
    entries: dict[str, bytes], links: tuple[str, ...] = ()
) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return SimpleUploadedFile("model.zip", buffer.getvalue())


REFUSALS = {
    "no source": (lambda tmp: {"name": "m"}, "give exactly one source"),
    "two sources": (
        lambda tmp: {
            "name": "m",
            "server_path": str(tmp),
            "files": zip_with({"a": b"1"}),
        },
        "give exactly one source",
    ),
    "bad name": (
        lambda tmp: {"name": "no spaces", "files": zip_with({"a": b"1"})},
        "is not a valid name",
    ),
    "no name": (lambda tmp: {"files": zip_with({"a": b"1"})}, "a name is required"),
    "zip slip": (
        lambda tmp: {
            "name": "m",
            "files": zip_with({"ok": b"1", "../../evil.py": b"x"}),
        },
        "not a safe file name",
    ),
    "absolute zip entry": (
        lambda tmp: {"name": "m", "files": zip_with({"/tmp/evil.py": b"x"})},
        "not a safe file name",
    ),
    "zip symlink": (
        lambda tmp: {
            "name": "m",
            "files": zip_with({"MLmodel": b"x"}, links=("passwd",)),
        },
        "symbolic link",
    ),
    "zip bomb": (
        lambda tmp: {"name": "m", "files": zip_with({"zeros": bytes(2 * 1024 * 1024)})},
        "unpacks to 2097152 bytes, more than STUDIO_MAX_UPLOAD_MB (1 MB)",
    ),
    "too big": (
        lambda tmp: {
            "name": "m",
            "files": SimpleUploadedFile("w.bin", bytes(1024 * 1024 + 1)),
        },
        "larger than STUDIO_MAX_UPLOAD_MB (1 MB)",
    ),
    "folder slip": (
        lambda tmp: {
            "name": "m",
            "folder": [SimpleUploadedFile("evil.py", b"x")],
            "relative_paths": json.dumps(["../../evil.py"]),
        },
        "not a safe file name",
    ),
    "folder list mismatch": (
        lambda tmp: {
            "name": "m",
            "folder": [SimpleUploadedFile("a.py", b"x")],
            "relative_paths": json.dumps(["m/b.py"]),
        },
        "does not match its files",
    ),
    "mlflow without MLmodel": (
        lambda tmp: {
            "name": "m",
            "type": "mlflow_model",
            "files": zip_with({"w.bin": b"1"}),
        },
        "an mlflow_model needs an MLmodel file",
    ),
    "bad MLmodel": (
        lambda tmp: {
            "name": "m",
            "files": zip_with({"MLmodel": b"flavors: [unclosed"}),
        },
        "MLmodel file is not valid YAML",
    ),
    "outside roots": (
        lambda tmp: {"name": "m", "server_path": str(tmp / "elsewhere")},
        "outside the allowed roots",
    ),
    "symlink escape": (
        lambda tmp: {"name": "m", "server_path": str(tmp / "server" / "escape")},
        "outside the allowed roots",
    ),
    "missing server path": (
        lambda tmp: {"name": "m", "server_path": str(tmp / "server" / "nope")},
        "does not exist on the server",
    ),
    "bad tags": (
        lambda tmp: {"name": "m", "tags": "novalue", "files": zip_with({"a": b"1"})},
        "is not key=value",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_it_refuses_on_the_form_and_writes_nothing(cast, settings, tmp_path, case):
    settings.STUDIO_MAX_UPLOAD_MB = 1
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "server" / "escape").symlink_to(tmp_path / "elsewhere")
    make, message = REFUSALS[case]
    before = snapshot()

    response = post_register(cast, make(tmp_path))

    assert response.status_code == 200
    assert message in response.content.decode().replace("&#x27;", "'")
    assert snapshot() == before


def test_it_lists_without_a_query_per_row(cast, django_assert_max_num_queries):
    for number in range(12):
        for version in (1, 2):
            ModelAsset.objects.create(
                workspace=cast.workspace, name=f"m{number:02d}", version=version,
                type="custom_model", path="/nowhere", created_by=cast.owner,
            )  # fmt: skip
    client = cast.client("reader")

    with django_assert_max_num_queries(6):
        response = client.get(url("model-list"))

    assert response.content.decode().count("<td>2</td>\n          <td>2</td>") == 12


def test_it_pages_the_list_fifty_names_at_a_time(cast):
    ModelAsset.objects.bulk_create(
        ModelAsset(
            workspace=cast.workspace,
            name=f"m{n:02d}",
            version=1,
            type="custom_model",
            path="/nowhere",
        )  # fmt: skip
        for n in range(55)
    )
    client = cast.client("reader")

    first = client.get(url("model-list")).content.decode()
    second = client.get(url("model-list") + "?page=2").content.decode()

    assert ">m49</a>" in first and ">m50</a>" not in first
    assert ">m54</a>" in second and "Page 2 of 2" in second


def test_it_shows_no_register_button_to_readers(cast):
    register = url("model-register")

    assert register not in cast.client("reader").get(url("model-list")).content.decode()
    assert (
        register in cast.client("contributor").get(url("model-list")).content.decode()
    )


def test_it_says_when_the_files_are_no_longer_readable(cast, settings, registered):
    settings.STUDIO_ALLOWED_ROOTS = []

    page = cast.client("reader").get(url("model-detail", "clf", 1)).content.decode()

    assert "The files cannot be read here" in page
