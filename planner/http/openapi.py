"""The app's OpenAPI 3.1 document, built from the pydantic models.

``POST /api/v1/plans/generate`` is the seed's operation: the same request and
response schemas (the models of :mod:`planner.models`), summary and
operation id.  The other operations describe the rest of the API.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from planner import __version__
from planner.execution import ExecutionStatus
from planner.http.schemas import (
    ErrorResponse,
    ExecutionResponse,
    HealthResponse,
    PlanGenerationStatus,
    RefineRequest,
)
from planner.models import HTTPValidationError, PlanGenerationResponse, TaskPlanRequest

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{model}"

_MODELS: list[type[BaseModel]] = [
    TaskPlanRequest,
    PlanGenerationResponse,
    HTTPValidationError,
    ErrorResponse,
    ExecutionResponse,
    PlanGenerationStatus,
    RefineRequest,
    HealthResponse,
]

_SEED_DESCRIPTION = """Generate a task plan asynchronously using Temporal workflow.

This endpoint:
1. Creates an execution record in the database
2. Submits a Temporal workflow for plan generation
3. Returns execution_id for tracking progress
4. Client can stream results via /api/v1/executions/{execution_id}/stream

Flow:
1. POST /api/v1/plans/generate → get execution_id
2. GET /api/v1/executions/{execution_id}/stream → stream progress and final plan
3. Use plan from execution.plan_json with existing /api/v1/tasks/plan/execute"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


_UNAUTHORIZED = _json("ErrorResponse", "Missing or invalid bearer token")
_NOT_FOUND = _json("ErrorResponse", "No such execution for this tenant")
_INVALID = _json("HTTPValidationError", "Validation Error")
_TOO_LARGE = _json("ErrorResponse", "Request body too large")

# The HTTP server (uvicorn) answers requests it cannot parse, such as a
# non-numeric Content-Length, before the app sees them.
_MALFORMED: dict[str, Any] = {
    "description": "Malformed HTTP request, refused by the server",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}

_ID_PARAMETER: dict[str, Any] = {
    "name": "execution_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "title": "Execution Id"},
}


def build_openapi(max_body_size: int) -> dict[str, Any]:
    """Return the OpenAPI document of the app.

    Args:
        max_body_size: the body limit, mentioned in the 413 descriptions.
    """
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    components = defs.get("$defs", {})
    too_large = {**_TOO_LARGE, "description": f"Request body larger than {max_body_size} bytes"}
    by_id = {"parameters": [_ID_PARAMETER]}
    paths: dict[str, Any] = {
        "/api/v1/plans/generate": {
            "post": {
                "tags": ["Async Plan Generation"],
                "summary": "Generate Plan Async",
                "description": _SEED_DESCRIPTION,
                "operationId": "generate_plan_async_api_v1_plans_generate_post",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": "The same key (per tenant) returns the same execution",
                    }
                ],
                "requestBody": {
                    "content": {"application/json": {"schema": _ref("TaskPlanRequest")}},
                    "required": True,
                },
                "responses": {
                    "200": _json("PlanGenerationResponse", "Successful Response"),
                    "401": _UNAUTHORIZED,
                    "413": too_large,
                    "422": _json("HTTPValidationError", "Validation Error"),
                    "500": _json("ErrorResponse", "The executor refused the run (it is failed)"),
                },
            }
        },
        "/api/v1/executions": {
            "get": {
                "tags": ["executions"],
                "summary": "List executions",
                "description": "The caller's executions, newest first. For the next page pass "
                "the last id as `before`.",
                "operationId": "list_executions",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": [s.value for s in ExecutionStatus]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    },
                    {
                        "name": "before",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1},
                        "description": "An execution id: only executions created before it",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Executions, newest first",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": _ref("ExecutionResponse")}
                            }
                        },
                    },
                    "401": _UNAUTHORIZED,
                    "404": _json("ErrorResponse", "`before` names no execution of this tenant"),
                    "422": _INVALID,
                },
            }
        },
        "/api/v1/executions/{execution_id}": {
            **by_id,
            "get": {
                "tags": ["executions"],
                "summary": "Get an execution",
                "description": "The execution record, with `plan_json` once completed.",
                "operationId": "get_execution",
                "responses": {
                    "200": _json("ExecutionResponse", "The execution"),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                },
            },
        },
        "/api/v1/executions/{execution_id}/stream": {
            **by_id,
            "get": {
                "tags": ["executions"],
                "summary": "Stream an execution's events",
                "description": "Server-Sent Events: `id:` is the event's seq, `event:` its type, "
                "`data:` its JSON payload. `Last-Event-ID` (or `last_event_id`) resumes after "
                "that event. Ends after `done`.",
                "operationId": "stream_execution",
                "parameters": [
                    {
                        "name": "last_event_id",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "422": _INVALID,
                },
            },
        },
        "/api/v1/plans/generation/{execution_id}": {
            **by_id,
            "get": {
                "tags": ["Async Plan Generation"],
                "summary": "Plan generation status",
                "description": "The reference service's status view of a plan generation.",
                "operationId": "get_plan_generation_status",
                "responses": {
                    "200": _json("PlanGenerationStatus", "The status"),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                },
            },
        },
        "/api/v1/executions/{execution_id}/cancel": {
            **by_id,
            "post": {
                "tags": ["executions"],
                "summary": "Cancel an execution",
                "description": "Stops a pending or running execution and returns its final record.",
                "operationId": "cancel_execution",
                "responses": {
                    "200": _json("ExecutionResponse", "The cancelled (or just ended) execution"),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "409": _json("ErrorResponse", "The execution has already ended"),
                },
            },
        },
        "/api/v1/executions/{execution_id}/refine": {
            **by_id,
            "post": {
                "tags": ["Async Plan Generation"],
                "summary": "Refine a plan",
                "description": "Submits a new generation whose request is the parent's plus "
                "the feedback, `previous_plan` and the next `iteration`.",
                "operationId": "refine_plan",
                "requestBody": {
                    "content": {"application/json": {"schema": _ref("RefineRequest")}},
                    "required": True,
                },
                "responses": {
                    "200": _json("PlanGenerationResponse", "Successful Response"),
                    "401": _UNAUTHORIZED,
                    "404": _NOT_FOUND,
                    "409": _json("ErrorResponse", "The parent has no plan (it did not complete)"),
                    "413": too_large,
                    "422": _INVALID,
                    "500": _json("ErrorResponse", "The executor refused the run (it is failed)"),
                },
            },
        },
    }
    for path, operation_id in (("/api/v1/health", "health"), ("/health", "health_root")):
        paths[path] = {
            "get": {
                "tags": ["health"],
                "summary": "Health",
                "operationId": operation_id,
                "security": [],
                "responses": {"200": _json("HealthResponse", "The service is up")},
            }
        }
    for item in paths.values():
        for key, operation in item.items():
            if key != "parameters":
                operation["responses"].setdefault("400", _MALFORMED)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "planner",
            "description": "Task plan generation with live, resumable progress",
            "version": __version__,
        },
        "security": [{"BearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "BearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Enter your Kubiya API token (format: Bearer <token>)",
                }
            },
        },
    }
