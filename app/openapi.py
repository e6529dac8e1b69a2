"""The OpenAPI app class: flask-openapi3 plus a spec that states every error the API can answer."""

from flask_openapi3 import OpenAPI

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
# Every route but the probes shares the per-client rate limit.
UNLIMITED_PREFIXES = ("/health",)


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


class DMarketOpenAPI(OpenAPI):
    def generate_spec_json(self):
        """flask-openapi3 adds a 422 (as an array) to every operation; make it true to our API."""
        super().generate_spec_json()
        for path, item in self.spec_json["paths"].items():
            for operation in item.values():
                responses = operation["responses"]
                takes_input = operation.get("parameters") or operation.get("requestBody")
                if takes_input:
                    responses["422"] = _error("The request is not valid (details name each field)")
                else:
                    responses.pop("422", None)
                if "application/json" in operation.get("requestBody", {}).get("content", {}):
                    responses.setdefault("400", _error("The body is not valid JSON"))
                    responses.setdefault("413", _error("The body is larger than MAX_CONTENT_LENGTH"))
                    responses.setdefault("415", _error("The body is not application/json"))
                if not path.startswith(UNLIMITED_PREFIXES):
                    responses.setdefault("429", _error("Too many requests; see Retry-After"))
                responses.setdefault("500", _error("Unexpected error (logged with the request id)"))
