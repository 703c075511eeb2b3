"""REST API: the OpenAPI schema is valid and complete; docs are served locally."""

from __future__ import annotations

import re

from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from .test_api_support import api_url

SCHEMA = api_url("schema")


def test_it_generates_a_valid_schema_without_warnings():
    GENERATOR_STATS.reset()

    schema = SchemaGenerator().get_schema(request=None, public=True)

    validate_schema(schema)
    assert not GENERATOR_STATS, "drf-spectacular warned; run manage.py spectacular"


def test_it_serves_the_schema_at_a_stable_url(client, db):
    response = client.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    paths = set(schema["paths"])
    assert {
        "/api/workspaces/",
        "/api/workspaces/{workspace}/models/{name}/versions/{version}/",
        "/api/workspaces/{workspace}/data/",
        "/api/workspaces/{workspace}/environments/",
        "/api/workspaces/{workspace}/endpoints/{name}/invoke/",
        "/api/workspaces/{workspace}/endpoints/{name}/default/",
        "/api/workspaces/{workspace}/endpoints/{endpoint}/deployments/{name}/",
        "/api/workspaces/{workspace}/jobs/{name}/cancel/",
        "/api/workspaces/{workspace}/jobs/{name}/progress/",
        "/api/workspaces/{workspace}/jobs/{name}/files/",
        "/api/workspaces/{workspace}/jobs/{name}/log/",
    } <= paths
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }


def test_every_operation_documents_its_success_status(client, db):
    schema = client.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    invoke = schema["paths"]["/api/workspaces/{workspace}/endpoints/{name}/invoke/"]
    delete = schema["paths"]["/api/workspaces/{workspace}/endpoints/{name}/"]

    assert set(invoke["post"]["responses"]) == {"202"}
    assert set(delete["delete"]["responses"]) == {"202"}
    assert "multipart/form-data" in invoke["post"]["requestBody"]["content"]


def test_the_docs_page_uses_no_cdn(client, db):
    response = client.get(api_url("docs"))

    assert response.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert sources and all(not s.startswith(("http", "//")) for s in sources)
    assert any("drf_spectacular_sidecar" in source for source in sources)
    assert "cdn" not in response.text.lower()
