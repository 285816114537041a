//! The OpenAPI 3.1 document of the `/v1` API, served at `/v1/openapi.json`.
//! A test walks every path and method in it against the real router.

use serde_json::{Value, json};

use crate::runtime::ErrorKind;

/// The document.
pub(crate) fn document() -> Value {
    let error_types: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    let never_ran: Vec<&str> = (ErrorKind::ALL.iter())
        .filter(|k| !k.tool_may_have_run())
        .map(|k| k.as_str())
        .collect();
    let may_have_run = format!(
        "Whether the tool may have run at the server. false ({}): the call was refused before \
         it could run, so a retry is safe. true: it may have run; retry with the same Idempotency-Key.",
        never_ran.join(", ")
    );
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let ok = |description: &str, schema: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let scope_schema = json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9._:@-]+$"});
    let scope_header = json!({"name": "X-Mcpwatch-Scope", "in": "header", "required": false,
        "description": "The scope (1-200 characters of [A-Za-z0-9._:@-]); when the body names one too, both must agree, else 400.", "schema": scope_schema});
    let scope_path =
        json!({"name": "scope", "in": "path", "required": true, "schema": scope_schema});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "mcpwatch agent API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tool calls and session control through mcpwatch's pooled MCP sessions. \
                Errors are {\"error\": {\"type\", \"message\", \"may_have_run\"}}; a tool's isError result is a 200."
        },
        "servers": [{"url": "http://127.0.0.1:8700"}],
        "security": [{"bearer": []}, {}],
        "paths": {
            "/v1/tools/call": {"post": {
                "operationId": "callTool",
                "summary": "Call a tool on a server's pooled session for the scope.",
                "parameters": [scope_header.clone(),
                    {"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 255},
                     "description": "A retry with the same key (and body) joins the call in flight or gets its kept answer (for agent.idempotency_ttl); \
                        after an error whose may_have_run is false, it runs the call again."}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallRequest"}}}},
                "responses": {
                    "200": ok("The tool's result (check result.isError).", "CallResponse"),
                    "400": error("Malformed body, bad scope or JSON-RPC caller error."),
                    "401": error("Missing or wrong bearer token."),
                    "404": error("Unknown server."),
                    "413": error("Body larger than agent.max_body_bytes."),
                    "429": error("Upstream rate limit (Retry-After passed on)."),
                    "502": error("Upstream failure (transport_closed, session_expired, connect_failed, ...)."),
                    "503": error("breaker_open, pool_exhausted or shutting_down."),
                    "504": error("The call's deadline passed; the call was cancelled at the server.")
                }
            }},
            "/v1/servers": {"get": {
                "operationId": "listServers", "summary": "Configured servers with breaker state and session counts.",
                "responses": {"200": ok("Servers.", "Servers"), "401": error("Missing or wrong bearer token.")}
            }},
            "/v1/servers/{server}/tools": {"get": {
                "operationId": "listTools", "summary": "The server's tools (through the scope's pooled session).",
                "parameters": [{"name": "server", "in": "path", "required": true, "schema": {"type": "string"}}, scope_header],
                "responses": {"200": ok("Tools.", "Tools"), "400": error("Bad scope."), "401": error("Missing or wrong bearer token."),
                    "404": error("Unknown server."), "502": error("Upstream failure."), "503": error("Breaker open."), "504": error("Timeout.")}
            }},
            "/v1/servers/{server}/resources": {"get": {
                "operationId": "listResources", "summary": "The server's resources and resource templates (through the scope's pooled session); empty when the server has none.",
                "parameters": [{"name": "server", "in": "path", "required": true, "schema": {"type": "string"}}, scope_header.clone()],
                "responses": {"200": ok("Resources and templates.", "Resources"), "400": error("Bad scope."), "401": error("Missing or wrong bearer token."),
                    "404": error("Unknown server."), "502": error("Upstream failure."), "503": error("Breaker open."), "504": error("Timeout.")}
            }},
            "/v1/servers/{server}/prompts": {"get": {
                "operationId": "listPrompts", "summary": "The server's prompts (through the scope's pooled session); empty when the server has none.",
                "parameters": [{"name": "server", "in": "path", "required": true, "schema": {"type": "string"}}, scope_header.clone()],
                "responses": {"200": ok("Prompts.", "Prompts"), "400": error("Bad scope."), "401": error("Missing or wrong bearer token."),
                    "404": error("Unknown server."), "502": error("Upstream failure."), "503": error("Breaker open."), "504": error("Timeout.")}
            }},
            "/v1/resources/read": {"post": {
                "operationId": "readResource", "summary": "Read a resource on a server's pooled session for the scope.",
                "parameters": [scope_header.clone()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReadRequest"}}}},
                "responses": {"200": ok("The MCP ReadResourceResult.", "Result"), "400": error("Malformed body, bad scope, or the server refused the request (unknown resource)."),
                    "401": error("Missing or wrong bearer token."), "404": error("Unknown server."), "502": error("Upstream failure."),
                    "503": error("breaker_open, pool_exhausted or shutting_down."), "504": error("Timeout.")}
            }},
            "/v1/prompts/get": {"post": {
                "operationId": "getPrompt", "summary": "Get a prompt on a server's pooled session for the scope.",
                "parameters": [scope_header.clone()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PromptRequest"}}}},
                "responses": {"200": ok("The MCP GetPromptResult.", "Result"), "400": error("Malformed body, bad scope or arguments, or the server refused the request (unknown prompt)."),
                    "401": error("Missing or wrong bearer token."), "404": error("Unknown server."), "502": error("Upstream failure."),
                    "503": error("breaker_open, pool_exhausted or shutting_down."), "504": error("Timeout.")}
            }},
            "/v1/sessions": {"get": {
                "operationId": "listSessions", "summary": "Every live session.",
                "responses": {"200": ok("Sessions.", "Sessions"), "401": error("Missing or wrong bearer token.")}
            }},
            "/v1/scopes/{scope}": {"delete": {
                "operationId": "closeScope", "summary": "Close the scope's sessions on every server.",
                "parameters": [scope_path.clone()],
                "responses": {"200": ok("How many sessions closed.", "Closed"), "400": error("Bad scope."), "401": error("Missing or wrong bearer token.")}
            }},
            "/v1/sessions/{server}/{scope}": {"delete": {
                "operationId": "closeSession", "summary": "Close one pooled session.",
                "parameters": [{"name": "server", "in": "path", "required": true, "schema": {"type": "string"}},
                               scope_path],
                "responses": {"200": ok("How many sessions closed (0 or 1).", "Closed"), "400": error("Bad scope."),
                    "401": error("Missing or wrong bearer token."), "404": error("Unknown server.")}
            }},
            "/v1/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document.",
                "responses": {"200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "401": error("Missing or wrong bearer token.")}
            }}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "CallRequest": {"type": "object", "required": ["server", "tool"], "additionalProperties": false, "properties": {
                    "server": {"type": "string"}, "tool": {"type": "string"},
                    "arguments": {"type": ["object", "null"]},
                    "scope": {"type": ["string", "null"], "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9._:@-]+$"},
                    "timeout_ms": {"type": ["integer", "null"], "minimum": 1, "maximum": 86_400_000}}},
                "CallResponse": {"type": "object", "required": ["result", "session", "duration_ms"], "properties": {
                    "result": {"type": "object", "description": "The MCP CallToolResult."},
                    "session": {"type": "object", "properties": {"reused": {"type": "boolean"}, "age_ms": {"type": "integer"}}},
                    "duration_ms": {"type": "number"}}},
                "Servers": {"type": "object", "properties": {"servers": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "transport": {"type": "string", "enum": ["stdio", "http", "sse", "builtin"]},
                    "state": {"type": "string", "enum": ["ready", "degraded", "down"]},
                    "breaker": {"type": "string", "enum": ["closed", "half_open", "open"]},
                    "sessions": {"type": "integer"}, "protocol_version": {"type": ["string", "null"]}}}}}},
                "Tools": {"type": "object", "properties": {"tools": {"type": "array", "items": {"type": "object", "description": "An MCP Tool."}}}},
                "Resources": {"type": "object", "properties": {
                    "resources": {"type": "array", "items": {"type": "object", "description": "An MCP Resource."}},
                    "resource_templates": {"type": "array", "items": {"type": "object", "description": "An MCP ResourceTemplate."}}}},
                "Prompts": {"type": "object", "properties": {"prompts": {"type": "array", "items": {"type": "object", "description": "An MCP Prompt."}}}},
                "ReadRequest": {"type": "object", "required": ["server", "uri"], "additionalProperties": false, "properties": {
                    "server": {"type": "string"}, "uri": {"type": "string"},
                    "scope": {"type": ["string", "null"], "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9._:@-]+$"}}},
                "PromptRequest": {"type": "object", "required": ["server", "name"], "additionalProperties": false, "properties": {
                    "server": {"type": "string"}, "name": {"type": "string"},
                    "arguments": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
                    "scope": {"type": ["string", "null"], "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9._:@-]+$"}}},
                "Result": {"type": "object", "required": ["result"], "properties": {"result": {"type": "object", "description": "The MCP result."}}},
                "Sessions": {"type": "object", "properties": {"sessions": {"type": "array", "items": {"type": "object", "properties": {
                    "server": {"type": "string"}, "scope": {"type": "string"}, "transport": {"type": "string"},
                    "age_ms": {"type": "integer"}, "idle_ms": {"type": "integer"}, "calls": {"type": "integer"},
                    "in_flight": {"type": "integer"}, "owned": {"type": "boolean"}, "protocol_version": {"type": "string"},
                    "mcp_session_id": {"type": "string"}, "pid": {"type": "integer"}}}}}},
                "Closed": {"type": "object", "properties": {"closed": {"type": "integer"}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["type", "message", "may_have_run"], "properties": {
                    "type": {"type": "string", "enum": error_types}, "message": {"type": "string"},
                    "may_have_run": {"type": "boolean", "description": may_have_run}}}}}
            }
        }
    })
}
