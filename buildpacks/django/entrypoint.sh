#!/bin/sh
# paas entrypoint: keep the settings shim in front of the project's settings.
# A DJANGO_SETTINGS_MODULE config var names the project's settings; the shim
# wraps it (PAAS_DJANGO_SHIM=0 leaves the variable as the user set it).
if [ "${PAAS_DJANGO_SHIM:-1}" != "0" ] && [ -n "${DJANGO_SETTINGS_MODULE:-}" ] && [ "$DJANGO_SETTINGS_MODULE" != "paas_settings" ]; then
    PAAS_PROJECT_SETTINGS="$DJANGO_SETTINGS_MODULE"
    DJANGO_SETTINGS_MODULE=paas_settings
    export PAAS_PROJECT_SETTINGS DJANGO_SETTINGS_MODULE
fi
exec "$@"
