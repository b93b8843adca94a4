# The Wattrail image: every service of docker-compose.yml (simulator, edge agents, ingestors,
# analytics scheduler, API with dashboard, the pki-init job) runs it with a `wattrail` command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY protocols ./protocols
COPY security ./security
COPY firmware_sim ./firmware_sim
COPY edge ./edge
COPY cloud ./cloud
COPY wattrail ./wattrail
# Wheels exist for every dependency on amd64/arm64 (psycopg[binary], numba, cryptography).
RUN pip install . && rm -rf /src

# Non-root. Its group is gid 1883, eclipse-mosquitto's `mosquitto` group, so the broker can
# read the key `wattrail deploy init` writes for it (0640) and nothing else of ours.
RUN groupadd --gid 1883 wattrail \
 && useradd --uid 10001 --gid 1883 --home-dir /var/lib/wattrail --shell /usr/sbin/nologin wattrail \
 && install -d -o wattrail -g wattrail -m 0750 /var/lib/wattrail \
      /var/lib/wattrail/pki /var/lib/wattrail/broker /var/lib/wattrail/sim \
      /var/lib/wattrail/agents /var/lib/wattrail/outbox /var/lib/wattrail/secrets
# Named volumes mounted on these folders start with this owner and mode.

USER wattrail
WORKDIR /var/lib/wattrail
ENTRYPOINT ["wattrail"]
CMD ["--help"]
