#!/bin/sh
# paas build step, run as root in a container of the app's dependency image
# after paas uploaded the code to /app and this folder to /paas:
#   sh /paas/collectstatic.sh          collectstatic when django.contrib.staticfiles is installed
#   sh /paas/collectstatic.sh --skip   the DISABLE_COLLECTSTATIC config var is set
# When it succeeds, paas makes the release image's one code layer from what
# /app, /paas and the folders named in /paas/keep hold now.
#
# The app's config vars are in /tmp/paas-build-env (as Heroku gives them to
# a build): read, then removed before any of the app's code runs, and never
# part of the layer (/tmp is not kept). Settings that need a SECRET_KEY at
# import time get a throwaway one when the app has none.
if [ -f /tmp/paas-build-env ]; then
    set -a
    . /tmp/paas-build-env
    set +a
    rm -f /tmp/paas-build-env
fi
: "${SECRET_KEY:=build-only-throwaway}" "${DJANGO_SECRET_KEY:=build-only-throwaway}"
export SECRET_KEY DJANGO_SECRET_KEY
# One Python process: collectstatic, then what the platform must know
# (/paas/meta.json) and which folders make the layer (/paas/keep).
python /paas/paas_inspect.py build /paas ${1:+"$1"} || exit 1
# What this step wrote into the app's folder (the collected files) belongs
# to the app like the rest of it (paas uploads the code owned by the app's
# user): a collectstatic at boot can update it. -h and find's default: no
# symlink is followed, so nothing outside /app changes owner.
find /app -xdev ! -user 10001 -exec chown -h 10001:10001 {} +
