"""The pod streams of the HTTP front: logs as chunked text; exec, attach and port-forward over
WebSocket (the channel protocols kubectl and the client libraries speak).

Both go through the same kubelet proxy (kubeletproxy.py) as the gRPC front's Logs and Exec, after
the same authorization (`get pods/log`, `create pods/exec`), and are audited the same way.
"""

from __future__ import annotations

import logging

from aiohttp import web

from api import errors
from api.proto import tinykube_pb2 as pb
from apiserver.auth import Credentials
from apiserver.handler import RequestHandler, internal
from apiserver.rest import paths, websocket

log = logging.getLogger(__name__)

_TRUE = ("1", "true", "True")


def _int(request: web.Request, name: str) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise errors.BadRequest(message=f'{name}: Invalid value: "{raw}": must be an integer'
                                ) from None
    if value < 0:
        raise errors.BadRequest(message=f"{name}: Invalid value: {value}: must be >= 0")
    return value


def logs_request(request: web.Request, req: paths.RequestInfo) -> pb.LogsRequest:
    q = request.query
    return pb.LogsRequest(
        namespace=req.namespace, name=req.name, container=q.get("container", ""),
        follow=q.get("follow", "") in _TRUE, previous=q.get("previous", "") in _TRUE,
        tail_lines=_int(request, "tailLines") if "tailLines" in q else -1,
        timestamps=q.get("timestamps", "") in _TRUE,
        since_seconds=_int(request, "sinceSeconds"), limit_bytes=_int(request, "limitBytes"))


async def serve(request: web.Request, handler: RequestHandler, creds: Credentials,
                req: paths.RequestInfo) -> web.StreamResponse:
    if req.subresource == "log":
        return await _logs(request, handler, creds, req)
    return await websocket.serve(request, handler, creds, req)


async def _logs(request: web.Request, handler: RequestHandler, creds: Credentials,
                req: paths.RequestInfo) -> web.StreamResponse:
    rec = handler.record(creds, "get", "pods", req.namespace, req.name, "log")
    error: errors.ApiError | None = None
    resp: web.StreamResponse | None = None
    try:
        lreq = logs_request(request, req)
        proxy = await handler.stream_begin(creds, rec)
        async for chunk in proxy.logs(lreq):
            if resp is None:
                resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                resp.enable_chunked_encoding()
                await resp.prepare(request)
            await resp.write(chunk.data)
    except errors.ApiError as e:
        error = e
    except (ConnectionResetError, OSError) as e:
        log.debug("pods/log %s/%s: client went away: %s", req.namespace, req.name, e)
    except Exception as e:
        log.exception("pods/log %s/%s failed", req.namespace, req.name)
        error = internal(e)
    finally:
        handler.stream_end(rec, error)
    if resp is None:
        if error is not None:
            raise error
        # An empty log: 200 with no body.
        return web.Response(content_type="text/plain", body=b"")
    if error is not None:  # after output began, the status line is sent: say it in the text
        await resp.write(f"\nerror: {error.message}\n".encode())
    await resp.write_eof()
    return resp
