"""The operator console: one site's tasks, traces, approvals, dead letters, policy and
workflow versions, health and cost in a browser (``sitemesh console``).

Starlette + Jinja templates rendered on the server, server-sent events for the live
pages, inline SVG charts; every asset is served by the console itself (no CDN, no
build step). Login is required: users and roles (:data:`ROLES`) come from a users
file with scrypt password hashes (:func:`load_users`, written by ``sitemesh
console-user``), or from a trusted reverse proxy's header. Raw content is shown only
to the roles the users file allows, PII-masked otherwise, and each view of it is in
the audit log (``sitemesh.state.read_audit``). See ``docs/console.md``.

```python
app = create_app(settings, users=load_users(path), nats_url="nats://127.0.0.1:4222")
uvicorn.run(app, host="127.0.0.1", port=8470)
```
"""

from ._app import LIVE_POLL_S, SESSION_COOKIE, create_app
from ._auth import (
    ROLES,
    ConsoleConfigError,
    Role,
    User,
    Users,
    default_users_file,
    hash_password,
    load_users,
    save_user,
    verify_password,
)
from ._data import ConsoleData, TaskFilters
from ._mask import WITHHELD, mask_text

__all__ = [
    "LIVE_POLL_S",
    "ROLES",
    "SESSION_COOKIE",
    "WITHHELD",
    "ConsoleConfigError",
    "ConsoleData",
    "Role",
    "TaskFilters",
    "User",
    "Users",
    "create_app",
    "default_users_file",
    "hash_password",
    "load_users",
    "mask_text",
    "save_user",
    "verify_password",
]
