"""paas build helper, run inside the image build with the paas settings shim.

  python /paas/paas_inspect.py staticfiles   exit 0 when django.contrib.staticfiles is installed,
                                            3 when it is not (any other code: the settings failed)
  python /paas/paas_inspect.py meta OUT.json [--no-static]
                                            write what the platform needs to know;
                                            --no-static: collectstatic was skipped, the
                                            platform serves no static files for the app

Not named inspect.py: /paas is on sys.path and would shadow the standard
library's inspect module.

OUT.json: {"static_url", "static_root", "media_url", "media_root"}, paths absolute.
"""

import json
import os
import sys

import django


def _url(value):
    value = str(value or "")
    if value and not value.startswith(("/", "http://", "https://")):
        value = "/" + value
    if value and not value.endswith("/"):
        value += "/"
    return value


def main(argv):
    django.setup()
    from django.apps import apps
    from django.conf import settings

    if argv[1:2] == ["staticfiles"]:
        return 0 if apps.is_installed("django.contrib.staticfiles") else 3
    if argv[1:2] == ["meta"] and len(argv) in (3, 4) and argv[3:] in ([], ["--no-static"]):
        staticfiles = apps.is_installed("django.contrib.staticfiles") and "--no-static" not in argv
        meta = {
            "static_url": _url(settings.STATIC_URL) if staticfiles else None,
            "static_root": os.path.abspath(str(settings.STATIC_ROOT))
            if staticfiles and settings.STATIC_ROOT
            else None,
            "media_url": _url(settings.MEDIA_URL) or None,
            "media_root": os.path.abspath(str(settings.MEDIA_ROOT)) if settings.MEDIA_ROOT else None,
        }
        with open(argv[2], "w") as out:
            json.dump(meta, out, indent=2)
            out.write("\n")
        print("-----> paas metadata: " + json.dumps(meta))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
