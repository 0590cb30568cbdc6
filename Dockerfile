FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY plugins ./plugins
COPY scripts ./scripts
COPY devkit ./devkit
COPY bin ./bin
# No config/ at all: the development config trusts config/dev/'s JWKS for operators, and that key's
# private half is public in this repository. The image trusts no key of its own; mount a config at
# /etc/tessera/tessera.yaml (docker-compose.yml mounts config/docker/tessera.yaml and the dev JWKS for
# local use) or point TESSERA_CONFIG / --config elsewhere.
ENV TESSERA_CONFIG=/etc/tessera/tessera.yaml
# `npm ci` builds through the prepare script; dev dependencies are pruned afterwards.
RUN npm ci && npm prune --omit=dev
USER node
EXPOSE 8200
CMD ["node", "bin/tessera.js", "server"]
