"""paas settings shim: the project's own settings, adapted to the platform.

DJANGO_SETTINGS_MODULE points here; PAAS_PROJECT_SETTINGS names the project's
settings module. Everything the project defines is imported unchanged, then the
platform's environment wins for the few settings a deploy owns (secret key,
hosts, database, static and media locations, proxy headers).

With PAAS_DJANGO_SHIM=0 this module only re-exports the project's settings.
Written for the standard library only: the project's requirements are not
changed.
"""

import importlib as _importlib
import os as _os
from urllib.parse import parse_qsl as _parse_qsl
from urllib.parse import unquote as _unquote
from urllib.parse import urlsplit as _urlsplit

_project = _importlib.import_module(_os.environ["PAAS_PROJECT_SETTINGS"])
globals().update(
    {name: getattr(_project, name) for name in dir(_project) if not name.startswith("__")}
)

_ENGINES = {
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "pgsql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
    "sqlite": "django.db.backends.sqlite3",
}


def _database(url):
    """A Django DATABASES entry from a DATABASE_URL (sqlite:////abs/path, postgres://u:p@h:5432/n)."""
    parts = _urlsplit(url)
    engine = _ENGINES.get(parts.scheme)
    if engine is None:
        raise ValueError(
            "DATABASE_URL scheme %r is not supported: use sqlite:////path or postgres://" % parts.scheme
        )
    if parts.scheme == "sqlite":
        # sqlite:////data/db.sqlite3 -> /data/db.sqlite3; sqlite:///rel.db -> rel.db
        name = parts.path[1:] if parts.path.startswith("/") else parts.path
        return {"ENGINE": engine, "NAME": _unquote(name or parts.netloc or ":memory:")}
    db = {
        "ENGINE": engine,
        "NAME": _unquote(parts.path.lstrip("/")),
        "USER": _unquote(parts.username or ""),
        "PASSWORD": _unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }
    options = dict(_parse_qsl(parts.query))
    if options:
        db["OPTIONS"] = options
    return db


def _truthy(value):
    return value.strip().lower() in ("1", "true", "yes", "on")


if _os.environ.get("PAAS_DJANGO_SHIM", "1") != "0":
    if _os.environ.get("SECRET_KEY"):
        SECRET_KEY = _os.environ["SECRET_KEY"]

    if "DEBUG" in _os.environ:
        DEBUG = _truthy(_os.environ["DEBUG"])

    _hosts = [h.strip() for h in _os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    ALLOWED_HOSTS = list(globals().get("ALLOWED_HOSTS", [])) + [
        h for h in _hosts if h not in globals().get("ALLOWED_HOSTS", [])
    ]
    _origins = list(globals().get("CSRF_TRUSTED_ORIGINS", []))
    for _h in _hosts:
        if _h == "*":
            continue
        _h = "*" + _h if _h.startswith(".") else _h  # ".example.com" -> "*.example.com"
        for _scheme in ("https://", "http://"):
            if _scheme + _h not in _origins:
                _origins.append(_scheme + _h)
    CSRF_TRUSTED_ORIGINS = _origins

    if _os.environ.get("DATABASE_URL"):
        _default = dict(globals().get("DATABASES", {}).get("default", {}))
        _new = _database(_os.environ["DATABASE_URL"])
        for _keep in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "ATOMIC_REQUESTS", "TIME_ZONE"):
            if _keep in _default:
                _new[_keep] = _default[_keep]
        DATABASES = dict(globals().get("DATABASES", {}))
        DATABASES["default"] = _new

    if not globals().get("STATIC_ROOT"):
        STATIC_ROOT = "/app/staticfiles"
    # Uploads go to the app's persistent volume when MEDIA_ROOT is unset,
    # relative, or inside the code (/app, as BASE_DIR / "media" is): the code
    # is replaced by every deploy, the volume is not.
    _media = str(globals().get("MEDIA_ROOT") or "")
    _media = _os.path.normpath(_media) if _media else ""
    if not _media or not _os.path.isabs(_media) or _media == "/app" or _media.startswith("/app/"):
        MEDIA_ROOT = "/data/media"
    if not globals().get("MEDIA_URL") or globals().get("MEDIA_URL") == "/":
        MEDIA_URL = "/media/"

    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    # paas serves HTTPS (PAAS_HTTPS=1): the proxy redirects plain HTTP to
    # HTTPS once a name has its certificate (SECURE_SSL_REDIRECT's job, so
    # `check --deploy` need not ask for it), and cookies travel over TLS only.
    if _truthy(_os.environ.get("PAAS_HTTPS", "")):
        SESSION_COOKIE_SECURE = True
        CSRF_COOKIE_SECURE = True
        _silenced = list(globals().get("SILENCED_SYSTEM_CHECKS", []))
        if "security.W008" not in _silenced:
            _silenced.append("security.W008")
        SILENCED_SYSTEM_CHECKS = _silenced

    # HSTS is the owner's choice (a browser then refuses plain HTTP for the
    # whole period): the PAAS_HSTS_SECONDS config var turns it on.
    if _os.environ.get("PAAS_HSTS_SECONDS", "").strip():
        SECURE_HSTS_SECONDS = int(_os.environ["PAAS_HSTS_SECONDS"].strip())
        SECURE_HSTS_INCLUDE_SUBDOMAINS = _truthy(_os.environ.get("PAAS_HSTS_INCLUDE_SUBDOMAINS", ""))
        SECURE_HSTS_PRELOAD = _truthy(_os.environ.get("PAAS_HSTS_PRELOAD", ""))
