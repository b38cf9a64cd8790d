#!/bin/sh
# paas release step, run before migrate in a one-off container of the new
# image with the app's config vars (so DEBUG, SECRET_KEY, ALLOWED_HOSTS are
# the real ones): Django's deployment checklist, then `migrate --check`.
#   manage.py check --deploy   its warnings go to the push output; they never
#                              stop the push (its exit code is ignored)
#   manage.py migrate --check  its exit code is this script's: non-zero when
#                              migrations are pending (or it cannot tell), and
#                              then paas snapshots the data and runs migrate
# One container for both: each container costs seconds.
python manage.py check --deploy 2>&1
exec python manage.py migrate --check --skip-checks >/dev/null 2>&1
