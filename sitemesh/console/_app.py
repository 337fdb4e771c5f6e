"""The console's web app (Starlette + Jinja, server-sent events for live pages).

Routes (every one but ``/login``, ``/static`` and ``/healthz`` needs a logged-in user;
without one, HTML pages answer 401 with the login form and ``/api/*`` 401 JSON):

=========================================  ==========  =====================================
route                                      role        what
=========================================  ==========  =====================================
``GET /tasks``                             viewer      live list, filters, search by id
``GET /tasks/{id}``                        viewer      timeline, decision, answer, calls,
                                                       what left the site beside what stayed
``GET /tasks/{id}/trace``                  viewer      the step waterfall and its spans
``GET /approvals``                         viewer      parked tasks, what would leave
``POST /approvals/{id}``                   approver    approve / reject, reason required
``GET /dead-letters``, ``/dead-letters/N`` viewer      reason, field, original (masked)
``POST /dead-letters/{n}/redrive``         approver    republish the original once
``GET /policy``, ``/workflows``            viewer      live versions, history, diff
``GET /health``                            viewer      workers, queues, streams, tools
``GET /cost``                              viewer      by tenant, agent, model, day (SVG)
``GET /audit``                             admin       the audit log
``GET /events``                            viewer      SSE: ``change`` when the site's
                                                       records change
``GET /api/tasks``, ``/api/tasks/{id}``    viewer      the same as JSON
=========================================  ==========  =====================================

Raw content (ticket text, dead-letter originals and reasons) is masked unless the
user's role is in the users file's ``raw_roles``; every view of raw content, every
decision and every redrive is written to the audit log (``console_audit``) first.
Forms carry a per-session CSRF token; the session cookie is signed, ``HttpOnly`` and
``SameSite=Strict``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
from jinja2 import Environment, PackageLoader, select_autoescape
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..config import Settings
from ..errors import BusConnectionError, SitemeshError
from ..policy import task_text
from ..schemas import utcnow
from ..state import (
    ApprovalAlreadyDecided,
    UnknownApproval,
    audit,
    read_audit,
)
from ._auth import Role, User, Users, load_users
from ._charts import bar_chart, waterfall
from ._data import PAGE_SIZE, ConsoleData, DocKind, TaskFilters, TaskPage
from ._mask import mask, warm

log = logging.getLogger("sitemesh.console")

SESSION_COOKIE: Final = "sitemesh_console"
SESSION_MAX_AGE_S: Final = 8 * 3600
"""A login lasts 8 hours (a working shift)."""
LIVE_POLL_S: Final = 1.0
"""Seconds between the SSE stream's looks at the database."""

_HERE = Path(__file__).parent


SECURITY_HEADERS: Final = (
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)  # fmt: skip
"""Sent with every response: only the console's own scripts and styles run, no page
embeds it (clickjacking), nothing it shows is cached or leaks in a Referer."""


class _SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _UsersFile:
    """The users file, re-read when it changes (a role change applies at the next
    request)."""

    def __init__(self, path: Path | None, users: Users | None) -> None:
        self.path = path
        self._users = users if users is not None else load_users(path)  # type: ignore[arg-type]
        self._mtime = path.stat().st_mtime_ns if path is not None and path.exists() else 0

    def get(self) -> Users:
        if self.path is not None:
            with contextlib.suppress(OSError):
                mtime = self.path.stat().st_mtime_ns
                if mtime != self._mtime:
                    try:
                        self._users = load_users(self.path)
                        self._mtime = mtime
                    except SitemeshError as exc:  # keep the last good file
                        log.error("users file not reloaded: %s", exc)
        return self._users


class _Live:
    """One poller per console for every live page: it reads the site's fingerprint
    (:meth:`ConsoleData.fingerprint`, three indexed queries) every
    :data:`LIVE_POLL_S` seconds while someone listens, and wakes the listeners when it
    changes. The database cost does not grow with the number of open pages."""

    def __init__(self, data: ConsoleData) -> None:
        self._data = data
        self.current = ""
        self._changed = asyncio.Condition()
        self._listeners = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(LIVE_POLL_S)
            if not self._listeners:
                continue
            try:
                now = await self._data.fingerprint()
            except Exception as exc:  # the database is away for a moment: try again
                log.warning("live updates: fingerprint not read: %s", type(exc).__name__)
                continue
            if now != self.current:
                self.current = now
                async with self._changed:
                    self._changed.notify_all()

    async def changed(self, seen: str, *, timeout_s: float) -> str:
        """The fingerprint once it differs from ``seen``, or after ``timeout_s``."""
        self._listeners += 1
        try:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self.current != seen), timeout_s
                    )
            return self.current
        finally:
            self._listeners -= 1


def _parse_time(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise _BadInput(
            f"{field}: expected an ISO 8601 time (2026-12-04T10:00), got {value!r}"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class _BadInput(Exception):
    """A query or form field is invalid (the message names it)."""


def create_app(
    settings: Settings,
    *,
    users: Users | None = None,
    users_file: Path | None = None,
    nats_url: str | None = None,
    monitor_url: str | None = None,
    secret_key: str | None = None,
    warm_analyzer: bool = True,
) -> Starlette:
    """The console for one site.

    Args:
        settings: the site (database, NATS identity, site name).
        users: the users (else read from ``users_file``).
        users_file: the users file, re-read when it changes.
        nats_url: the site's NATS server (``None``: database pages only).
        monitor_url: that server's HTTP monitoring endpoint, for the hub link state.
        secret_key: signs session cookies (default: random per process, so a restart
            logs everyone out).
        warm_analyzer: load the PII analyzer in a thread at start.

    Raises:
        ConsoleConfigError: neither ``users`` nor a valid ``users_file``.
    """
    users_src = _UsersFile(users_file, users)
    data = ConsoleData(settings, nats_url, monitor_url=monitor_url)
    live = _Live(data)
    env = Environment(
        loader=PackageLoader("sitemesh.console", "templates"),
        autoescape=select_autoescape(["html"]),
        enable_async=False,
    )
    env.filters["ts"] = lambda at: "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["ms"] = lambda v: "-" if v is None else f"{v:,.1f} ms"
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)

    def user_of(request: Request) -> User | None:
        cfg = users_src.get()
        if cfg.trusted_proxy_header:
            name = request.headers.get(cfg.trusted_proxy_header)
            host = request.client.host if request.client else ""
            if name and host in cfg.trusted_proxies:
                return cfg.users.get(name)
        name = request.session.get("user")
        return cfg.users.get(name) if isinstance(name, str) else None

    def csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(24)
            request.session["csrf"] = token
        return token

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        user = user_of(request)
        fragment = request.headers.get("x-sitemesh-fragment") == "1"
        html = env.get_template(name).render(
            request=request, user=user, site=data.site, csrf=csrf(request),
            fragment=fragment, bus_error=data.bus_error, path=request.url.path, **ctx,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    def problem(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        """The error page: ``title`` and ``message`` (which names what was wrong)."""
        return render(request, "error.html", status=status, title=title, message=message)

    async def task_or_404(request: Request) -> TaskPage | Response:
        """The path's task, or the 404 page naming it."""
        task_id = request.path_params["task_id"]
        tp = await data.task(task_id)
        if tp is None:
            return problem(request, 404, "Not found", f"no task {task_id!r} at site {data.site}")
        return tp

    def login_page(request: Request, status: int = 401, error: str = "") -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "login required"}, status_code=401)
        return render(request, "login.html", status=status, error=error,
                      next=request.url.path)  # fmt: skip

    def forbidden(request: Request, what: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": f"forbidden: {what}"}, status_code=403)
        return problem(request, 403, "Forbidden", what)

    def page(
        role: Role = "viewer",
    ) -> Callable[[Callable[..., Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]:
        """Route decorator: the user must be logged in with ``role`` or above; bad
        input is a 400 page naming the field; POSTs must carry the CSRF token."""

        def wrap(
            fn: Callable[..., Awaitable[Response]],
        ) -> Callable[[Request], Awaitable[Response]]:
            async def handler(request: Request) -> Response:
                user = user_of(request)
                if user is None:
                    return login_page(request)
                if not user.allows(role):
                    return forbidden(request, f"this needs the {role} role; you are {user.role}")
                if request.method == "POST":
                    form = await request.form()
                    if form.get("csrf") != request.session.get("csrf"):
                        return forbidden(request, "the form is stale (CSRF token); reload the page")
                try:
                    return await fn(request, user)
                except _BadInput as exc:
                    return problem(request, 400, "Bad request", str(exc))

            return handler

        return wrap

    async def log_audit(
        request: Request, user: User, action: str, target: str, detail: str = ""
    ) -> None:
        host = request.client.host if request.client else ""
        await audit(data.store.engine, user=user.name, role=user.role, action=action,
                    site=data.site, target=target, detail=detail, client=host)  # fmt: skip

    # -- login ------------------------------------------------------------------------
    async def login(request: Request) -> Response:
        if request.method == "GET":
            if user_of(request) is not None:
                return RedirectResponse("/tasks", status_code=303)
            return login_page(request, status=200)
        form = await request.form()
        name, pw = str(form.get("username", "")), str(form.get("password", ""))
        user = await asyncio.to_thread(users_src.get().authenticate, name, pw)
        host = request.client.host if request.client else ""
        if user is None:
            await audit(data.store.engine, user=name or "?", role="", action="login_failed",
                        site=data.site, client=host)  # fmt: skip
            return login_page(request, status=401, error="wrong user name or password")
        request.session.clear()
        request.session["user"] = user.name
        request.session["csrf"] = secrets.token_urlsafe(24)
        await log_audit(request, user, "login", f"user:{user.name}")
        nxt = str(form.get("next") or "/tasks")
        return RedirectResponse(
            nxt if nxt.startswith("/") and not nxt.startswith("//") else "/tasks", status_code=303
        )

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # -- tasks ------------------------------------------------------------------------
    def filters(request: Request) -> TaskFilters:
        q = request.query_params

        def get(key: str) -> str | None:
            return q.get(key) or None

        return TaskFilters(
            site=get("site"), kind=get("kind"), status=get("status"), outcome=get("outcome"),
            data_class=get("data_class"), since=_parse_time(get("since"), "since"),
            before=_parse_time(get("before"), "before"), q=(get("q") or "").strip() or None,
        )  # fmt: skip

    @page()
    async def tasks(request: Request, user: User) -> Response:
        f = filters(request)
        rows = await data.tasks(f)
        if (
            f.q
            and len(rows) == 1
            and rows[0].task_id == f.q
            and not request.headers.get("x-sitemesh-fragment")
        ):
            return RedirectResponse(f"/tasks/{f.q}", status_code=303)
        counts = await data.counts(f.site)
        next_before = (
            rows[-1].submitted_at.isoformat()
            if len(rows) == PAGE_SIZE and rows[-1].submitted_at
            else None
        )
        return render(request, "tasks.html", rows=rows, f=f, counts=counts, live="tasks",
                      next_before=next_before)  # fmt: skip

    @page()
    async def task(request: Request, user: User) -> Response:
        tp = await task_or_404(request)
        if not isinstance(tp, TaskPage):
            return tp
        task_id = tp.view.task.task_id
        raw = await data.raw_task_text(tp)
        may_see_raw = users_src.get().sees_raw(user)
        sees_raw = may_see_raw and request.query_params.get("masked") != "1"
        stayed = None
        if raw is not None:
            if sees_raw:
                await log_audit(request, user, "view_raw", f"task:{task_id}", "task text")
                stayed = raw
            else:
                stayed = await mask(raw)
        cost = sum((c.get("cost_nanos") or 0) for c in tp.model_calls) / 1e9
        return render(request, "task.html", tp=tp, r=tp.report, stayed=stayed,
                      raw_shown=sees_raw and raw is not None, cost=cost, live=f"task:{task_id}",
                      sees_raw=may_see_raw)  # fmt: skip

    @page()
    async def trace(request: Request, user: User) -> Response:
        tp = await task_or_404(request)
        if not isinstance(tp, TaskPage):
            return tp
        task_id = tp.view.task.task_id
        steps = []
        for ev in tp.view.events:
            label = str(ev.payload.get("step") or ev.type.split(".")[0])
            where = str(
                ev.payload.get("zone")
                or ("cloud" if (ev.role or "").startswith("cloud") else "edge")
            )
            steps.append((f"{label} ({ev.role or '-'})", ev.started_at, ev.at, where))
        ap = tp.approval
        if ap is not None:  # the wait for a person is part of the task's time
            end = ap.decided_at or utcnow()
            who = ap.decided_by or "pending"
            steps.append((f"awaiting approval ({who})", ap.requested_at, end, "wait"))
            steps.sort(key=lambda st: st[1] or st[2])
        svg = waterfall(steps, tp.view.task.submitted_at)
        return render(request, "trace.html", tp=tp, svg=svg, live=f"task:{task_id}")

    # -- approvals --------------------------------------------------------------------
    @page()
    async def approvals(request: Request, user: User) -> Response:
        status = request.query_params.get("status", "pending")
        if status not in ("pending", "approved", "rejected", "all"):
            raise _BadInput(f"status: expected pending, approved, rejected or all, got {status!r}")
        recs = await data.approvals(None if status == "all" else status)  # type: ignore[arg-type]
        cfg = users_src.get()
        items: list[tuple[Any, Any, str | None, str | None]] = []
        for r in recs:
            try:
                item = r.item()
            except ValueError:
                items.append((r, None, None, None))
                continue
            text = task_text(item.task)
            masked = await mask(text)
            raw = None
            if cfg.sees_raw(user):
                await log_audit(request, user, "view_raw", f"approval:{r.approval_id}", "task text")
                raw = text
            items.append((r, item, masked, raw))
        return render(request, "approvals.html", items=items, shown=status, live="approvals",
                      can_decide=user.allows("approver"))  # fmt: skip

    @page("approver")
    async def decide(request: Request, user: User) -> Response:
        approval_id = request.path_params["approval_id"]
        form = await request.form()
        verdict, reason = str(form.get("decision", "")), str(form.get("reason", "")).strip()
        if verdict not in ("approve", "reject"):
            raise _BadInput(f"decision: expected approve or reject, got {verdict!r}")
        if not reason:
            raise _BadInput("reason: a reason is required to approve or reject")
        await log_audit(request, user, verdict, f"approval:{approval_id}", reason)
        try:
            rec = await data.decide(approval_id, verdict == "approve", user.name, reason)
        except UnknownApproval:
            return problem(request, 404, "Not found", f"no approval {approval_id!r}")
        except ApprovalAlreadyDecided as exc:
            return problem(request, 409, "Already decided", str(exc))
        except (BusConnectionError, SitemeshError) as exc:
            return problem(request, 503, "Not published", str(exc))
        return RedirectResponse(f"/tasks/{rec.task_id}", status_code=303)

    # -- dead letters -----------------------------------------------------------------
    @page()
    async def dead_letters(request: Request, user: User) -> Response:
        recs = await data.dead_letters()
        cfg = users_src.get()
        rows = []
        for rec in recs or []:
            reason = rec.letter.reason if cfg.sees_raw(user) else await mask(rec.letter.reason)
            rows.append((rec, reason))
        if rows and cfg.sees_raw(user):
            await log_audit(request, user, "view_raw", "dead_letters", f"{len(rows)} reasons")
        flash = request.session.pop("flash", "")
        return render(request, "dead_letters.html", rows=rows, unavailable=recs is None,
                      flash=flash, live="dead_letters",
                      can_redrive=user.allows("approver"))  # fmt: skip

    @page()
    async def dead_letter(request: Request, user: User) -> Response:
        seq = request.path_params["seq"]
        try:
            rec = await data.dead_letter(seq)
        except LookupError:
            rec = None
        if rec is None:
            missing = f"no dead letter {seq} in DLQ_{data.site} (or NATS is away)"
            return problem(request, 404, "Not found", missing)
        letter = rec.letter
        text = letter.original.decode("utf-8", "replace")
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        want_raw = request.query_params.get("raw") == "1"
        cfg = users_src.get()
        if want_raw and not cfg.sees_raw(user):
            return forbidden(
                request, f"raw content is for {', '.join(cfg.raw_roles)}; you are {user.role}"
            )
        if want_raw:
            await log_audit(
                request, user, "view_raw", f"dead_letter:{rec.seq}", "original and reason"
            )
            reason = letter.reason
        else:
            text, reason = await mask(text), await mask(letter.reason)
        return render(request, "dead_letter.html", rec=rec, original=text, reason=reason,
                      raw=want_raw, sees_raw=cfg.sees_raw(user),
                      can_redrive=user.allows("approver"))  # fmt: skip

    @page("approver")
    async def redrive_letter(request: Request, user: User) -> Response:
        seq = request.path_params["seq"]
        await log_audit(request, user, "redrive", f"dead_letter:{seq}")
        try:
            res = await data.redrive(seq)
        except LookupError:
            return problem(request, 404, "Not found", f"no dead letter {seq}")
        except SitemeshError as exc:
            return problem(request, 409, "Not redriven", str(exc))
        request.session["flash"] = (
            f"dead letter {seq} was redriven before" if res.already
            else f"dead letter {seq} redriven (republished, stream seq {res.seq})"
        )  # fmt: skip
        return RedirectResponse("/dead-letters", status_code=303)

    # -- policy, workflows --------------------------------------------------------------
    def documents(kind: DocKind) -> Callable[[Request], Awaitable[Response]]:
        @page()
        async def view(request: Request, user: User) -> Response:
            revs = await data.revisions(kind)
            diff: list[str] = []
            text = ""
            a, b = request.query_params.get("a"), request.query_params.get("b")
            by_rev = {str(r.revision): r for r in revs or []}
            for name, v in (("a", a), ("b", b)):
                if v is not None and v not in by_rev:
                    raise _BadInput(f"{name}: no revision {v!r} of the {kind} (see the history)")
            if revs and a and b:
                diff = await data.diff(kind, by_rev[a], by_rev[b])
            elif revs:
                text = await data.revision_text(kind, revs[0])
            return render(request, "documents.html", kind=kind, revs=revs, diff=diff, text=text,
                          a=a, b=b)  # fmt: skip

        return view

    # -- health, cost, audit ----------------------------------------------------------
    @page()
    async def health(request: Request, user: User) -> Response:
        h = await data.health()
        # a backend's error text may quote what it was sent: masked for every role here
        # (the worker's log and ``sitemesh tools health`` on the site have it whole)
        reports = []
        for rep in h.tools:
            models = [
                msgspec.structs.replace(m, last_error=await mask(m.last_error))
                if m.last_error else m
                for m in rep.models
            ]  # fmt: skip
            reports.append(msgspec.structs.replace(rep, models=models))
        h = dataclasses.replace(h, tools=reports)
        return render(request, "health.html", h=h, errors=await data.last_errors(),
                      live="health")  # fmt: skip

    @page()
    async def cost(request: Request, user: User) -> Response:
        days = request.query_params.get("days", "30")
        if not days.isdigit() or not 1 <= int(days) <= 3660:
            raise _BadInput(f"days: expected a number of days 1-3660, got {days!r}")
        since = utcnow() - timedelta(days=int(days))
        charts = []
        for by in ("tenant", "agent", "model", "day"):
            rows = await data.cost(by, since)
            if by == "day":
                rows = sorted(rows, key=lambda r: r.key)
            charts.append((by, rows, bar_chart([(r.key, float(r.cost)) for r in rows[:20]],
                                               unit="USD", title=f"cost by {by}")))  # fmt: skip
        return render(request, "cost.html", charts=charts, days=days)

    @page("admin")
    async def audit_page(request: Request, user: User) -> Response:
        entries = await read_audit(data.store.engine, limit=500)
        return render(request, "audit.html", entries=entries)

    # -- JSON -------------------------------------------------------------------------
    @page()
    async def api_tasks(request: Request, user: User) -> Response:
        import msgspec

        rows = await data.tasks(filters(request))
        return Response(msgspec.json.encode({"site": data.site, "tasks": rows}),
                        media_type="application/json")  # fmt: skip

    @page()
    async def api_task(request: Request, user: User) -> Response:
        import msgspec

        tp = await data.task(request.path_params["task_id"])
        if tp is None:
            return JSONResponse({"error": "no such task"}, status_code=404)
        return Response(msgspec.json.encode(tp.report), media_type="application/json")

    # -- live -------------------------------------------------------------------------
    @page()
    async def events(request: Request, user: User) -> Response:
        async def stream() -> AsyncIterator[dict[str, str]]:
            seen = live.current
            while True:
                now = await live.changed(seen, timeout_s=LIVE_POLL_S * 5)
                if await request.is_disconnected():
                    return
                if now != seen:
                    seen = now
                    yield {"event": "change", "data": now}

        return EventSourceResponse(stream(), ping=15)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "site": data.site})

    async def root(request: Request) -> Response:
        return RedirectResponse("/tasks", status_code=303)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await data.open()
        warming = asyncio.create_task(asyncio.to_thread(warm)) if warm_analyzer else None
        live.current = await data.fingerprint()
        polling = asyncio.create_task(live.run(), name="console-live")
        try:
            yield
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
            if warming is not None:
                with contextlib.suppress(Exception):
                    await warming
            await data.close()

    routes = [
        Route("/", root),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/tasks", tasks),
        Route("/tasks/{task_id:str}/trace", trace),
        Route("/tasks/{task_id:str}", task),
        Route("/approvals", approvals),
        Route("/approvals/{approval_id:str}", decide, methods=["POST"]),
        Route("/dead-letters", dead_letters),
        Route("/dead-letters/{seq:str}", dead_letter),
        Route("/dead-letters/{seq:str}/redrive", redrive_letter, methods=["POST"]),
        Route("/policy", documents("policy")),
        Route("/workflows", documents("workflows")),
        Route("/health", health),
        Route("/cost", cost),
        Route("/audit", audit_page),
        Route("/events", events),
        Route("/api/tasks", api_tasks),
        Route("/api/tasks/{task_id:str}", api_task),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(_SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=secret_key or secrets.token_urlsafe(32),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE_S,
            same_site="strict",
            https_only=False,
        )
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.data = data
    return app
