"""paas build helper, run inside the image build with the paas settings shim.

  python /paas/paas_inspect.py staticfiles   exit 0 when django.contrib.staticfiles is installed,
                                            3 when it is not (any other code: the settings failed)
  python /paas/paas_inspect.py build DIR [--skip]
                                            the build step: collectstatic (unless --skip:
                                            the DISABLE_COLLECTSTATIC config var is set), then
                                            DIR/meta.json (as meta) and DIR/keep (the
                                            folders whose contents make the code layer);
                                            then, with the app's real config and its data
                                            read-only, `check --deploy` (never fatal) and
                                            `migrate --check`: meta.json's
                                            "migrations_pending" is false only when Django
                                            says nothing is left to apply
  python /paas/paas_inspect.py meta OUT.json [--no-static]
                                            write what the platform needs to know;
                                            --no-static: collectstatic was skipped, the
                                            platform serves no static files for the app

Not named inspect.py: /paas is on sys.path and would shadow the standard
library's inspect module.

OUT.json: {"static_url", "static_root", "media_url", "media_root"}, paths absolute.
"""

import importlib
import io
import json
import os
import sys
import traceback

import django


def _url(value):
    value = str(value or "")
    if value and not value.startswith(("/", "http://", "https://")):
        value = "/" + value
    if value and not value.endswith("/"):
        value += "/"
    return value


def _meta(settings, staticfiles):
    return {
        "static_url": _url(settings.STATIC_URL) if staticfiles else None,
        "static_root": os.path.abspath(str(settings.STATIC_ROOT))
        if staticfiles and settings.STATIC_ROOT
        else None,
        "media_url": _url(settings.MEDIA_URL) or None,
        "media_root": os.path.abspath(str(settings.MEDIA_ROOT)) if settings.MEDIA_ROOT else None,
    }


def _build(apps, settings, out_dir, skip):
    installed = apps.is_installed("django.contrib.staticfiles")
    if skip:
        print("-----> collectstatic skipped: the DISABLE_COLLECTSTATIC config var is set; paas serves no static files for this app")
    elif not installed:
        print("-----> collectstatic skipped: django.contrib.staticfiles is not in INSTALLED_APPS")
    else:
        from django.core.management import call_command

        try:
            call_command("collectstatic", interactive=False, verbosity=1)
        except Exception:
            traceback.print_exc()
            print("-----> collectstatic failed (the error is above): fix it, or skip the step with 'paas config:set DISABLE_COLLECTSTATIC=1' and serve static files another way")
            return 1
    meta = _meta(settings, installed and not skip)
    meta["migrations_pending"] = _release_check()
    with open(os.path.join(out_dir, "meta.json"), "w") as out:
        json.dump(meta, out, indent=2)
        out.write("\n")
    print("-----> paas metadata: " + json.dumps(meta))
    keep = ["/app", "/paas"]
    root = meta["static_root"]
    if root and root != "/" and not any(root == k or root.startswith(k + "/") for k in keep):
        keep.append(root)
    with open(os.path.join(out_dir, "keep"), "w") as out:
        out.write("".join(k + "\n" for k in keep))
    return 0


def _release_check():
    """check --deploy (shown, never fatal), then whether migrations are
    pending: True when they are or when Django cannot tell (no database
    yet, a read-only one it cannot open, an error): then paas migrates."""
    from django.core.management import call_command

    print(CHECK_MARK, flush=True)
    try:
        call_command("check", deploy=True)
    except BaseException as e:  # SystemCheckError for errors; never fatal here
        print(str(e), flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # A StringIO, not a file: Django's output wrappers flush when they
        # are collected, after a `with` would have closed the file.
        quiet = io.StringIO()
        call_command("migrate", check=True, skip_checks=True, stdout=quiet, stderr=quiet)
        return False
    except BaseException:
        return True
    finally:
        print(CHECK_END, flush=True)


CHECK_MARK = "-----> paas: check --deploy"
CHECK_END = "-----> paas: checked"


def _import_app_module():
    """The module the web server loads (PAAS_APP_MODULE, e.g. mysite.wsgi),
    imported first, as gunicorn does: a wsgi.py may extend sys.path
    (cookiecutter-django's adds its apps folder) before the settings name
    apps found only there. False when it fails (the error is printed)."""
    module = os.environ.get("PAAS_APP_MODULE")
    if not module:
        return True
    try:
        importlib.import_module(module)
    except Exception:
        traceback.print_exc()
        print("-----> the app's module %s failed to import (the error is above): the web server imports it to start the app, so fix the error and push again" % module)
        return False
    return True


def main(argv):
    if not _import_app_module():
        return 1
    django.setup()
    from django.apps import apps
    from django.conf import settings

    if argv[1:2] == ["build"] and len(argv) in (3, 4) and argv[3:] in ([], ["--skip"]):
        return _build(apps, settings, argv[2], "--skip" in argv)
    if argv[1:2] == ["staticfiles"]:
        return 0 if apps.is_installed("django.contrib.staticfiles") else 3
    if argv[1:2] == ["meta"] and len(argv) in (3, 4) and argv[3:] in ([], ["--no-static"]):
        staticfiles = apps.is_installed("django.contrib.staticfiles") and "--no-static" not in argv
        meta = _meta(settings, staticfiles)
        with open(argv[2], "w") as out:
            json.dump(meta, out, indent=2)
            out.write("\n")
        print("-----> paas metadata: " + json.dumps(meta))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
