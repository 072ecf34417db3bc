"""The prediction service's OpenAPI document (``/openapi.json``, ``/docs``): FastAPI's for the routes it answers
(``/health``, ``/versions``, ``/metrics``), with the prediction routes, answered ahead of FastAPI's routing, added,
their request bodies derived from the data sets' declaration (``serve.request``) and every answer described exactly
(``response_schemas``: its key and score named by the model's declaration), so that a contract test can hold the
service to it
(``tests/integration/test_serving_contract.py``)."""

from __future__ import annotations

from typing import Any

from .request import MAX_MESSAGE


def install(app, schemas: dict[str, Any], token: bool) -> None:
    """Make ``app.openapi`` answer this document (built once, at the first call); ``schemas``: the request model's
    (``RequestModel.schema()``); ``token``: whether the prediction routes require the bearer token."""
    from ..core.schema import model

    base_openapi = app.openapi
    m = model()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = base_openapi()
            doc["paths"] = {
                "/predict": _prediction_route(schemas["one"], m.row_name, f"Predict one {m.row_name}", token),
                "/predict/batch": _prediction_route(schemas["many"], "batch", f"Predict a batch of {m.rows}", token),
                **doc["paths"],
            }
            for path, name in (("/health", "Health"), ("/versions", "Versions")):
                doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = _ref(name)
            doc["paths"]["/metrics"]["get"]["responses"]["200"] = {
                "description": "counters, gauges and histograms in Prometheus' text format (open, like /health: "
                "a gateway in front of the service should keep it to the scraper)",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
            components = doc.setdefault("components", {})
            components.setdefault("schemas", {}).update(schemas["components"])
            components["schemas"].update(response_schemas())
            components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi


def _prediction_route(body: dict[str, Any], name: str, summary: str, token: bool) -> dict[str, Any]:
    """A prediction route (``predict_<name>``): its request body (``serve.request``'s schema), its answers."""
    from ..core.schema import model

    return {
        "post": {
            "summary": summary,
            "operationId": f"predict_{name.lower()}",
            "security": [{"bearer": []}] if token else [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": _json(f"one prediction per {model().row_name}, in request order", "Predictions"),
                "400": _json("the Content-Length header is not a number", "Message"),
                **(
                    {
                        "401": {
                            **_json("no or a wrong bearer token", "Message"),
                            "headers": {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}}},
                        }
                    }
                    if token
                    else {}
                ),
                "413": _json(
                    "the body is larger than MLOPS_SERVE_MAX_BODY_BYTES (the connection is closed)", "Message"
                ),
                "422": _json(
                    "what is wrong with the body: the fields (loc) and why, never the input itself", "FieldErrors"
                ),
                "503": _json("no model version is deployed yet", "Message"),
            },
        }
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, name: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


_NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_COUNT = {"type": "integer", "minimum": 0}
_ARMS = {
    "champion": {**_NULLABLE_STRING, "description": "the champion's version (null: none)"},
    "challenger": {**_NULLABLE_STRING, "description": "the challenger's version while it gets traffic (null: none)"},
    "canary_share": {"type": "number", "minimum": 0, "maximum": 1},
    "shadow": {
        "type": "boolean",
        "description": "whether the challenger also scores, in the shadow, every flight the champion answers "
        "(while a canary of it runs, whatever its share; logged with arm shadow, never returned)",
    },
}


def response_schemas() -> dict[str, Any]:
    """What the service answers, described exactly (additionalProperties: false), so that a contract test can hold
    the service to it (tests/integration/test_serving_contract.py); each prediction's key and score are named by
    the model's declaration (``api.key``, ``score``: ``flight_key``, ``delay_probability``)."""
    from ..core.schema import model

    m = model()
    prediction = {
        "type": "object",
        "required": [m.key_field, m.score, "version", "arm"],
        "additionalProperties": False,
        "properties": {
            m.key_field: {"type": "string", "description": "the row's key columns (a date first), /-separated"},
            m.score: {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": f"the probability that {m.label.describe()}",
            },
            "version": {"type": "string", "description": "the model version that scored it"},
            "arm": {"type": "string", "enum": ["champion", "challenger"]},
        },
    }
    return {"Prediction": prediction} | RESPONSE_SCHEMAS


RESPONSE_SCHEMAS: dict[str, Any] = {
    "Predictions": {
        "type": "object",
        "required": ["request_id", "predictions"],
        "additionalProperties": False,
        "properties": {
            "request_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "predictions": {"type": "array", "minItems": 1, "items": _ref("Prediction")},
        },
    },
    "Message": {
        "type": "object",
        "required": ["detail"],
        "additionalProperties": False,
        "properties": {"detail": {"type": "string"}},
    },
    "FieldErrors": {
        "type": "object",
        "required": ["detail"],
        "additionalProperties": False,
        "properties": {
            "detail": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["loc", "msg", "type"],
                    "additionalProperties": False,
                    "properties": {
                        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                        "msg": {"type": "string", "maxLength": MAX_MESSAGE},
                        "type": {"type": "string"},
                    },
                },
            }
        },
    },
    "Versions": {
        "type": "object",
        "required": list(_ARMS),
        "additionalProperties": False,
        "properties": _ARMS,
    },
    "Health": {
        "type": "object",
        "required": [
            "status",
            "reasons",
            *_ARMS,
            "refresh",
            "logged",
            "pending_log",
            "spilled_log",
            "log_peak_pending",
            "log_lake_failures",
            "log_refused_dates",
            "log_lost",
            "log_writer_crashes",
        ],
        "additionalProperties": False,
        "properties": {
            "status": {
                "type": "string",
                "enum": ["ok", "degraded", "stale", "no_model"],
                "description": "stale: the last refresh of the aliases failed; what is loaded keeps serving. "
                "degraded: serving, but the prediction log is behind (the lake refuses a flight date, records wait "
                "in the spill folder). Answered with 200 whatever the status: the service still answers requests",
            },
            "reasons": {
                "type": "array",
                "items": {"type": "string"},
                "description": "why the status is not ok, one sentence each (empty when ok)",
            },
            **_ARMS,
            "refresh": {
                "type": "object",
                "required": ["ok", "error", "failures", "last_ok"],
                "additionalProperties": False,
                "properties": {
                    "ok": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
                    "error": _NULLABLE_STRING,
                    "failures": _COUNT,
                    "last_ok": _NULLABLE_STRING,
                },
            },
            "logged": {**_COUNT, "description": "prediction records written to the lake"},
            "pending_log": {**_COUNT, "description": "records waiting in memory"},
            "spilled_log": {**_COUNT, "description": "records in the spill folder, waiting for the lake"},
            "log_peak_pending": _COUNT,
            "log_lake_failures": {**_COUNT, "description": "writes of the log the lake refused"},
            "log_refused_dates": {
                "type": "array",
                "items": {"type": "string"},
                "description": "flight dates whose last write the lake refused: spilled, retried with backoff",
            },
            "log_lost": _COUNT,
            "log_writer_crashes": {
                **_COUNT,
                "description": "times the log's writer process died: what it held was spilled, a new one started",
            },
        },
    },
}
