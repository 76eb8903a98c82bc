# syntax=docker/dockerfile:1
# portlicense: one image for the sidecar and the authority (the command picks the role).
# Config and certificates are mounted at run time, never baked in:
#   docker run -v $PWD/config:/etc/portlicense/config:ro -v $PWD/certs:/etc/portlicense/certs:ro \
#     -v portlicense-data:/etc/portlicense/data -p 8443:8443 \
#     portlicense sidecar --config /etc/portlicense/config/sidecar.yaml

ARG NODE_VERSION=20.20

# --- build: compile TypeScript and the native SQLite addon -------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the lifecycle "prepare" (tsc) needs the sources, copied below; better-sqlite3's
# native build is run explicitly with npm rebuild.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

# --- runtime: node, the compiled code and production dependencies only -----------------------
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# tcmalloc, which the launcher preloads when present (about 5% less CPU per TLS handshake; see
# bin/portlicense). PORTLICENSE_MALLOC=system at run time keeps glibc's malloc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libtcmalloc-minimal4 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY package.json ./
COPY config ./config-examples
# The node image ships an unprivileged "node" user (uid 1000); the process never runs as root.
# Writable state (the sidecar's bundle cache file, the authority's SQLite store) lives in
# /etc/portlicense/data, next to the mounted config/ and certs/ that the example configs point at.
RUN mkdir -p /etc/portlicense/data && chown node:node /etc/portlicense/data
USER node
VOLUME ["/etc/portlicense/data"]
# Admin endpoints (/healthz, /readyz, /metrics) listen on 127.0.0.1:9901 (sidecar) by default;
# inside a container set admin.listen to 0.0.0.0:9901 if Prometheus scrapes from outside.
EXPOSE 8443 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORTLICENSE_ADMIN_PORT||'9901')+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The launcher preloads tcmalloc, sets glibc's MALLOC_TRIM_THRESHOLD_ (and GLIBC_TUNABLES on AMD), V8's
# array-buffer sweeping and OpenSSL's config (see bin/portlicense) and execs node: PID 1 is node.
ENTRYPOINT ["/app/bin/portlicense"]
CMD ["sidecar", "--config", "/etc/portlicense/config/sidecar.yaml"]
