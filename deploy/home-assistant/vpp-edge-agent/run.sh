#!/usr/bin/with-contenv bashio
# Map the add-on options (/data/options.json) to the agent's VPP_AGENT_* environment
# and run it in the foreground (the Supervisor sends SIGTERM on stop).
set -euo pipefail

export VPP_AGENT_AGGREGATOR="$(bashio::config 'aggregator')"
export VPP_AGENT_DEVICE__HOST="$(bashio::config 'device_host')"
export VPP_AGENT_DEVICE__PORT="$(bashio::config 'device_port')"
export VPP_AGENT_DEVICE__UNIT_ID="$(bashio::config 'device_unit_id')"
export VPP_AGENT_DEVICE__METER_IMPORT_POSITIVE="$(bashio::config 'meter_import_positive')"
export VPP_AGENT_SITE__MAX_IMPORT_W="$(bashio::config 'max_import_w')"
export VPP_AGENT_SITE__MAX_EXPORT_W="$(bashio::config 'max_export_w')"
export VPP_AGENT_BATTERY__RESERVE_SOC_PCT="$(bashio::config 'reserve_soc_pct')"
export VPP_AGENT_CONTROL__MODE="$(bashio::config 'mode')"
export VPP_AGENT_METRICS_HOST=0.0.0.0
export VPP_AGENT_METRICS_PORT=9465
# the telemetry spool (samples the aggregator has not stored yet) in the add-on's persistent /data
export VPP_AGENT_STATE_DIR=/data/state

if bashio::config.has_value 'house_id'; then
    export VPP_AGENT_HOUSE_ID="$(bashio::config 'house_id')"
fi

if bashio::config.true 'insecure'; then
    bashio::log.warning "insecure: plaintext gRPC, house id from a header (demos only)"
    export VPP_AGENT_INSECURE=true
else
    for f in tls_ca_file tls_cert_file tls_key_file; do
        if ! bashio::fs.file_exists "$(bashio::config "$f")"; then
            bashio::exit.nok "$f: $(bashio::config "$f") not found; copy the files from 'aggregator certs house' to /ssl/vpp/"
        fi
    done
    export VPP_AGENT_TLS__CA_FILE="$(bashio::config 'tls_ca_file')"
    export VPP_AGENT_TLS__CERT_FILE="$(bashio::config 'tls_cert_file')"
    export VPP_AGENT_TLS__KEY_FILE="$(bashio::config 'tls_key_file')"
fi

# The house in Home Assistant (MQTT discovery) through the broker the Supervisor names.
if bashio::config.true 'home_assistant_discovery'; then
    if bashio::services.available "mqtt"; then
        export VPP_AGENT_HOME_ASSISTANT__HOST="$(bashio::services mqtt 'host')"
        export VPP_AGENT_HOME_ASSISTANT__PORT="$(bashio::services mqtt 'port')"
        export VPP_AGENT_HOME_ASSISTANT__USERNAME="$(bashio::services mqtt 'username')"
        export VPP_AGENT_HOME_ASSISTANT__PASSWORD="$(bashio::services mqtt 'password')"
        if [[ "$(bashio::services mqtt 'ssl')" == "true" ]]; then
            export VPP_AGENT_HOME_ASSISTANT__TLS__CA_FILE=/etc/ssl/certs/ca-certificates.crt
        fi
        bashio::log.info "Home Assistant: MQTT discovery through ${VPP_AGENT_HOME_ASSISTANT__HOST}:${VPP_AGENT_HOME_ASSISTANT__PORT}"
    else
        bashio::log.warning "no MQTT broker from the Supervisor (install the Mosquitto add-on): the house is not published to Home Assistant"
    fi
fi

# Home Assistant's entities as the house's meters, loads and switchable loads, over the Core's
# WebSocket API with the Supervisor's token (homeassistant_api: true); entities one JSON per line.
if bashio::config.has_value 'ha_entities'; then
    if [[ -z "${SUPERVISOR_TOKEN:-}" ]]; then
        bashio::exit.nok "ha_entities: no SUPERVISOR_TOKEN (the add-on needs homeassistant_api: true)"
    fi
    export VPP_AGENT_HOME_ASSISTANT__API__URL=ws://supervisor/core/websocket
    export VPP_AGENT_HOME_ASSISTANT__API__TOKEN="${SUPERVISOR_TOKEN}"
    export VPP_AGENT_HOME_ASSISTANT__API__ENTITIES="$(bashio::config 'ha_entities' | jq -sc '[.[] | with_entries(select(.value != null))]')"
    if bashio::config.has_value 'ha_price_spike_per_kwh'; then
        export VPP_AGENT_HOME_ASSISTANT__API__PRICE_SPIKE_PER_KWH="$(bashio::config 'ha_price_spike_per_kwh')"
    fi
    bashio::log.info "Home Assistant: entities as the house's devices through the Supervisor's WebSocket API"
fi

bashio::log.info "edge agent for ${VPP_AGENT_DEVICE__HOST}:${VPP_AGENT_DEVICE__PORT} -> ${VPP_AGENT_AGGREGATOR}"
cd /data
exec "${VPP_EDGE_AGENT:-/opt/vpp/bin/edge-agent}" run
