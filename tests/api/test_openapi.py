"""The OpenAPI document lists every route with its schemas, its error responses and the security scheme."""

from __future__ import annotations

OPEN = {"/v1/health", "/v1/auth/register", "/v1/auth/login", "/v1/auth/refresh", "/v1/auth/claim"}


def test_every_route_is_documented_with_security_and_problem_responses(api):
    with api.client() as c:
        spec = c.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, ops in spec["paths"].items():
        assert path.startswith("/v1/"), path
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            if path not in OPEN:
                assert op.get("security") == [{"HTTPBearer": []}], where
                assert "401" in op["responses"], where
            for status, response in op["responses"].items():
                if status[0] in "45":
                    assert response["content"]["application/problem+json"]["schema"] == problem, where
            if op.get("requestBody") or op.get("parameters"):
                assert "422" in op["responses"], where

