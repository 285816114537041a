"""mcpwatch-client: call MCP tools through a running mcpwatch agent.

Each orchestrator thread is an mcpwatch *scope*: its calls share one pooled MCP session
per server (a stateful server keeps its state between steps), and ending the thread
closes them. Errors are typed, one class per agent ``ErrorKind``.

Submodules: ``langchain`` (LangChain / LangGraph tools, extra ``[langchain]``),
``checkpoint`` (a checkpointer whose thread delete closes the scope, extra
``[langgraph]``), ``gateway`` (helpers for MCP clients pointed at the agent's gateway),
``testing`` (a pytest fixture running a real ``mcpwatch serve``).
"""

from ._async_client import AsyncClient
from ._client import Client
from ._errors import (
    AgentUnreachable,
    BreakerOpen,
    Cancelled,
    ClientError,
    ConnectFailed,
    HttpStatus,
    InitializeFailed,
    InvalidRequest,
    McpwatchError,
    PayloadTooLarge,
    PoolExhausted,
    ProtocolError,
    RateLimited,
    ResponseTooLarge,
    SessionExpired,
    ShuttingDown,
    Timeout,
    ToolError,
    TransportClosed,
    Unauthorized,
    Unavailable,
    UnknownServer,
    UpstreamError,
)
from ._result import CallResult
from ._scope import scope_for, step_key

__all__ = [
    "AgentUnreachable",
    "AsyncClient",
    "BreakerOpen",
    "CallResult",
    "Cancelled",
    "Client",
    "ClientError",
    "ConnectFailed",
    "HttpStatus",
    "InitializeFailed",
    "InvalidRequest",
    "McpwatchError",
    "PayloadTooLarge",
    "PoolExhausted",
    "ProtocolError",
    "RateLimited",
    "ResponseTooLarge",
    "SessionExpired",
    "ShuttingDown",
    "Timeout",
    "ToolError",
    "TransportClosed",
    "Unauthorized",
    "Unavailable",
    "UnknownServer",
    "UpstreamError",
    "scope_for",
    "step_key",
]
