"""What every answer of `pipeline serve` goes through: the Host and Origin checks and the security headers.

- `Host`: only the names the server is meant to be reached by (against DNS rebinding: a page on
  attacker.example whose name is made to resolve to 127.0.0.1 sends `Host: attacker.example`), 400.
- `Origin`: a browser names the page that sent a request; the API and every non-GET request answer
  only a page of this server (403 otherwise, `text/plain` "simple" POSTs included). A request
  without `Origin` (curl, scripts) is not a browser's cross-site request and passes.
- Headers on every response: no MIME sniffing, no framing, no referrer, and a Content-Security-Policy
  that lets the pages load only their own scripts and pictures and talk only to this server.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The page's own script, its inline <style> blocks (report and gallery pages have them too), pictures
# from this server and the photo preview's blob: URL, the gallery's data: images, and fetch to itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
READ_METHODS = frozenset({"GET", "HEAD"})


def host_with_port(host: str, default_port: int) -> str:
    """`name:port` in lower case; a name without a port gets `default_port` (`[::1]` stays bracketed)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        return f"{name}:{rest[1:]}" if rest.startswith(":") and rest[1:] else f"{name}:{default_port}"
    if host.count(":") > 1:  # a bare IPv6 address
        return f"[{host}]:{default_port}"
    name, _, port = host.partition(":")
    return f"{name}:{port or default_port}"


class Guard:
    """ASGI middleware: Host allow-list, same-origin API, security headers on every response.

    allowed_hosts: `name` or `name:port` entries (a name alone means the server's `port`); None
    answers any Host (tests, a server behind a proxy that checks it).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str] | None, port: int = 80):
        self.app = app
        self.port = port
        self.allowed = None if allowed_hosts is None else {host_with_port(h, port) for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
                            if name.lower().encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> JSONResponse | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.allowed is not None and host_with_port(host, 80) not in self.allowed:
            return JSONResponse({"error": f"Host {host!r} is not a name of this server (pipeline serve --allowed-host)"},
                                status_code=400)
        origin = headers.get("origin")
        guarded = scope["method"] not in READ_METHODS or scope["path"].startswith("/api/")
        if guarded and origin is not None and origin.lower() != f"{scope.get('scheme', 'http')}://{host.lower()}":
            return JSONResponse({"error": f"a request from the page {origin!r}, not from this server's own page"},
                                status_code=403)
        return None
