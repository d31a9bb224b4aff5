# Prometheus from Debian's package, for machines that reach a Debian mirror but no container registry.
# The public image (prom/prometheus) works as well: compose.yaml runs the `prometheus` command either way.
ARG BASE_IMAGE=meseta-base:bookworm
FROM ${BASE_IMAGE}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/*
