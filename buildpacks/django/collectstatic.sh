#!/bin/sh
# paas build step, run in the project folder after the code is copied:
# collect static files, then write /paas/meta.json for the platform.
#   sh /paas/collectstatic.sh          collectstatic when django.contrib.staticfiles is installed
#   sh /paas/collectstatic.sh --skip   the DISABLE_COLLECTSTATIC config var is set
# The throwaway key exists only in this step (settings that read it at import
# time still load); the app gets its real SECRET_KEY at run time.
export SECRET_KEY=build-only-throwaway DJANGO_SECRET_KEY=build-only-throwaway
if [ "${1:-}" = "--skip" ]; then
    echo "-----> collectstatic skipped: the DISABLE_COLLECTSTATIC config var is set; paas serves no static files for this app"
    exec python /paas/paas_inspect.py meta /paas/meta.json --no-static
else
    python /paas/paas_inspect.py staticfiles
    installed=$?
    if [ "$installed" = 0 ]; then
        python manage.py collectstatic --noinput || {
            echo "-----> collectstatic failed (the error is above): fix it, or skip the step with 'paas config:set DISABLE_COLLECTSTATIC=1' and serve static files another way"
            exit 1
        }
    elif [ "$installed" = 3 ]; then
        echo "-----> collectstatic skipped: django.contrib.staticfiles is not in INSTALLED_APPS"
    else
        exit "$installed"
    fi
fi
# What this step wrote into the app's folder (the collected files) belongs
# to the app like the rest of it (see the Dockerfile's COPY --chown): a
# collectstatic at boot can update it. -h and find's default: no symlink is
# followed, so nothing outside /app changes owner.
find /app -xdev ! -user 10001 -exec chown -h 10001:10001 {} +
exec python /paas/paas_inspect.py meta /paas/meta.json
