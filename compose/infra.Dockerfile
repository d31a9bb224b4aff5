# RabbitMQ (with its management plugin) and etcd from Debian's packages, for machines that reach a
# Debian mirror but no container registry. Public images (rabbitmq:3-management, etcd) work as well.
ARG BASE_IMAGE=meseta-base:bookworm
FROM ${BASE_IMAGE}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rabbitmq-server etcd-server \
 && rm -rf /var/lib/apt/lists/* \
 && rabbitmq-plugins enable --offline rabbitmq_management \
 && echo 'loopback_users = none' > /etc/rabbitmq/rabbitmq.conf
