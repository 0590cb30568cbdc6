FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY plugins ./plugins
COPY scripts ./scripts
COPY bin ./bin
COPY config ./config
# `npm ci` builds through the prepare script; dev dependencies are pruned afterwards.
RUN npm ci && npm prune --omit=dev
USER node
EXPOSE 8200
CMD ["node", "bin/tessera.js", "server"]
