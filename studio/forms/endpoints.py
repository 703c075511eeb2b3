"""Forms of the endpoints area: field rules come from the engine and the services."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from scoring_engine import Settings, SpecError
from scoring_engine.config import LOGGING_LEVELS, OUTPUT_ACTIONS, build_settings

from ..models import BatchDeployment, BatchEndpoint, DataAsset, Environment, ModelAsset
from ..services.endpoints import check_endpoint_name
from .uploads import MultipleFileField, folder_file_names

# Settings a deployment sets, in the order the form shows them (DESIGN section 1).
DEPLOYMENT_SETTINGS = (
    "mini_batch_size",
    "instance_count",
    "max_concurrency_per_instance",
    "output_action",
    "output_file_name",
    "max_retries",
    "timeout",
    "error_threshold",
    "mini_batch_error_threshold",
    "logging_level",
    "environment_variables",
    "resource_monitor_interval",
)
# Settings one invocation may override (DESIGN section 1, last paragraph).
INVOKE_OVERRIDES = (
    "mini_batch_size",
    "instance_count",
    "max_concurrency_per_instance",
    "error_threshold",
    "logging_level",
    "output_file_name",
    "max_retries",
    "timeout",
)
SETTING_HELP = {
    "mini_batch_size": "Files per mini-batch; for tabular input rows or a size (10MB).",
    "instance_count": "Nodes the job uses.",
    "max_concurrency_per_instance": "Scoring processes per node.",
    "output_action": "append_row: rows from run() go to one file; summary_only:"
    " the script writes its own outputs.",
    "output_file_name": "Name of the common output file.",
    "max_retries": "Tries of a failed or timed-out mini-batch.",
    "timeout": "Seconds one run(mini_batch) may take.",
    "error_threshold": "Failed items tolerated before the job fails; -1 = never.",
    "mini_batch_error_threshold": "Failed mini-batches tolerated; -1 = never.",
    "logging_level": "Passed to the script as --logging_level.",
    "environment_variables": "KEY=VALUE lines, set for the scoring processes.",
    "resource_monitor_interval": "Seconds between resource samples; 0 = off.",
}


def parse_key_values(text: str, field: str) -> dict[str, str]:
    """`KEY=VALUE` lines to a mapping; blank lines and `#` comments are skipped."""
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip():
            raise ValidationError(
                f"{field}: line {number} ({stripped!r}) is not KEY=VALUE"
            )
        result[key.strip()] = value.strip()
    return result


def check_setting(name: str, value: Any) -> Any:
    """Validate one setting with the engine; its message names the field."""
    try:
        build_settings({name: value})
    except SpecError as exc:
        raise ValidationError(str(exc)) from exc
    return value


def _reference_choices(model: type, workspace: Any, blank: str) -> list[tuple]:
    """`name@latest` then every `name:version`, grouped by name, for a select."""
    rows = model.objects.filter(workspace=workspace).order_by("name", "-version")
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, version in rows.values_list("name", "version"):
        options = groups.setdefault(name, [(f"{name}@latest", f"{name}@latest")])
        options.append((f"{name}:{version}", f"{name}:{version}"))
    return [("", blank), *groups.items()]


def _name_rule(name: str, kind: str) -> str:
    try:
        return check_endpoint_name(name, kind=kind)
    except ValidationError as exc:
        raise ValidationError(exc.messages) from None


def _setting_field(name: str, required: bool) -> forms.Field:
    """A text field checked by the engine, so messages match YAML and the CLI."""
    # The YAML name as label: what users read here is what they write in files.
    label = name
    help_text = SETTING_HELP[name]
    if name == "environment_variables":
        return forms.CharField(
            label=label, required=False, help_text=help_text, widget=_short_textarea()
        )
    allowed = {"output_action": OUTPUT_ACTIONS, "logging_level": LOGGING_LEVELS}
    if name in allowed:
        choices = [(value, value) for value in allowed[name]]
        if not required:
            choices.insert(0, ("", "(deployment's value)"))
        widget: forms.Widget = forms.Select(choices=choices)
    else:
        widget = forms.TextInput()
    return forms.CharField(
        label=label, required=required, help_text=help_text, widget=widget
    )


def _short_textarea() -> forms.Textarea:
    return forms.Textarea(attrs={"rows": 3})


def setting_initial(values: Mapping[str, Any]) -> dict[str, str]:
    """Stored settings as the form shows them (30.0 -> "30", mappings as lines)."""
    initial = {}
    for name in DEPLOYMENT_SETTINGS:
        value = values.get(name, "")
        if name == "environment_variables":
            value = "\n".join(f"{k}={v}" for k, v in (value or {}).items())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        initial[name] = str(value)
    return initial


class EndpointForm(forms.Form):
    name = forms.CharField(
        help_text="3 to 32 characters: a letter, then letters, digits or '-'."
    )
    description = forms.CharField(required=False, widget=_short_textarea())

    def clean_name(self) -> str:
        return _name_rule(self.cleaned_data["name"].strip(), "endpoint")


class DeploymentForm(forms.Form):
    """A deployment revision: model, code, environment, compute and all settings."""

    name = forms.CharField(help_text="Same rules as endpoint names.")
    description = forms.CharField(required=False, widget=_short_textarea())
    model = forms.CharField(help_text="A registered model: name:version or @latest.")
    code_files = MultipleFileField(
        folder=True, paths_field="code_relative_paths", label="Code folder"
    )
    code_relative_paths = forms.CharField(required=False, widget=forms.HiddenInput)
    code_zip = forms.FileField(
        required=False,
        label="or a zip of the code",
        widget=forms.FileInput(attrs={"accept": ".zip"}),
    )
    code_path = forms.CharField(
        required=False,
        label="or a server path",
        help_text="A folder under the allowed roots; it is copied.",
    )
    keep_code = forms.BooleanField(required=False, label="Keep the current code")
    scoring_script = forms.CharField(
        required=False, help_text="File in the code folder defining init() and run()."
    )
    environment = forms.CharField(required=False)
    compute = forms.CharField(max_length=64, initial="default")
    make_default = forms.BooleanField(
        required=False, label="Make this the endpoint's default deployment"
    )

    def __init__(self, *args: Any, endpoint: BatchEndpoint, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        workspace = endpoint.workspace
        for name in ("code_files", "code_zip", "code_path"):
            self.fields[name].widget.attrs["data-unchecks"] = "id_keep_code"
        self.fields["model"].widget = forms.Select(
            choices=_reference_choices(ModelAsset, workspace, "Choose a model")
        )
        self.fields["environment"].widget = forms.Select(
            choices=_reference_choices(
                Environment, workspace, "None (MLflow models only)"
            )
        )
        for name in DEPLOYMENT_SETTINGS:
            self.fields[name] = _setting_field(name, required=True)
            self.initial.setdefault(name, setting_initial(Settings().as_dict())[name])

    @classmethod
    def initial_from(cls, deployment: BatchDeployment) -> dict[str, Any]:
        """Initial values of an update: the revision's own, code kept."""
        return {
            "name": deployment.name,
            "description": deployment.description,
            "model": f"{deployment.model.name}:{deployment.model.version}",
            "keep_code": bool(deployment.code_path),
            "scoring_script": deployment.scoring_script,
            "environment": str(deployment.environment or ""),
            "compute": deployment.compute,
            **setting_initial(deployment.settings),
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("code_files") and data.get("code_zip"):
            self.add_error("code_zip", "give a code folder or a zip, not both")
        for name in DEPLOYMENT_SETTINGS:
            if name not in data:
                continue
            value = data[name]
            if name == "environment_variables":
                try:
                    value = parse_key_values(value, name)
                except ValidationError as exc:
                    self.add_error(name, exc)
                    continue
            try:
                data[name] = check_setting(name, value)
            except ValidationError as exc:
                self.add_error(name, exc)
        return data

    def code_uploads(self) -> tuple[list[UploadedFile], list[str] | None]:
        """The uploaded code and, for a folder, each file's path in it.

        Django keeps only base names of uploads; the page's script sends each
        file's webkitRelativePath alongside, so sub-folders survive.
        """
        files = self.cleaned_data["code_files"]
        if files:
            raw = self.cleaned_data["code_relative_paths"]
            return files, folder_file_names(files, raw)
        zipped = self.cleaned_data["code_zip"]
        return ([zipped] if zipped else []), None

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        uploads, names = self.code_uploads()
        return {
            "name": data["name"],
            "description": data["description"],
            "model": data["model"],
            "code_uploads": uploads,
            "code_names": names,
            "code_path": data["code_path"].strip(),
            "keep_code": data["keep_code"],
            "scoring_script": data["scoring_script"].strip(),
            "environment": data["environment"],
            "compute": data["compute"].strip(),
            "settings": {name: data[name] for name in DEPLOYMENT_SETTINGS},
            "make_default": data["make_default"],
        }

    def clean_name(self) -> str:
        return _name_rule(self.cleaned_data["name"].strip(), "deployment")

    def setting_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in DEPLOYMENT_SETTINGS]


class SetDefaultForm(forms.Form):
    deployment = forms.CharField(max_length=32)


class InvokeForm(forms.Form):
    """One invocation: an input, where outputs go, optional overrides and tags."""

    deployment_name = forms.CharField(required=False, label="Deployment")
    data_asset = forms.CharField(required=False, label="Registered data asset")
    url = forms.CharField(required=False, label="or a URL", max_length=2048)
    input_files = MultipleFileField(required=False, label="or upload files")
    job_name = forms.CharField(
        required=False, max_length=64, help_text="Leave empty for a generated name."
    )
    output_path = forms.CharField(
        required=False,
        max_length=1024,
        help_text="Relative to the workspace's datastore; by default jobs/ and"
        " the job name.",
    )
    tags = forms.CharField(
        required=False, widget=_short_textarea(), help_text="KEY=VALUE lines."
    )

    def __init__(self, *args: Any, endpoint: BatchEndpoint, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = endpoint.deployments.order_by("name").values_list("name", flat=True)
        default = endpoint.default_deployment
        self.fields["deployment_name"].widget = forms.Select(
            choices=[("", f"Default ({default or 'none yet'})")]
            + [(n, n) for n in dict.fromkeys(names)]
        )
        self.fields["data_asset"].widget = forms.Select(
            choices=_reference_choices(DataAsset, endpoint.workspace, "—")
        )
        current = endpoint.current_deployment()
        shown = setting_initial(current.settings) if current else {}
        for name in INVOKE_OVERRIDES:
            self.fields[name] = _setting_field(name, required=False)
            if name not in shown:
                continue
            widget = self.fields[name].widget
            if isinstance(widget, forms.Select):
                widget.choices[0] = ("", f"(deployment's value: {shown[name]})")
            else:
                widget.attrs["placeholder"] = shown[name]

    def clean_tags(self) -> dict[str, str]:
        return parse_key_values(self.cleaned_data["tags"], "tags")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in INVOKE_OVERRIDES:
            if data.get(name):
                try:
                    check_setting(name, data[name])
                except ValidationError as exc:
                    self.add_error(name, exc)
        return data

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "deployment_name": data["deployment_name"],
            "data_asset": data["data_asset"].strip(),
            "url": data["url"].strip(),
            "uploads": data["input_files"],
            "output_path": data["output_path"].strip(),
            "job_name": data["job_name"].strip(),
            "overrides": {n: data[n] for n in INVOKE_OVERRIDES if data.get(n)},
            "tags": data["tags"],
        }

    def override_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in INVOKE_OVERRIDES]
