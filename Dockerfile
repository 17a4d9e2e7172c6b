# The backend image used by k8s/backend.yaml (API and worker alike; ROLES picks the part).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# git for clones and pushes on the worker; tar to copy working copies in and out of sandbox pods.
RUN apt-get update && apt-get install -y --no-install-recommends git tar ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/package.json ./
USER 10001
ENV NODE_ENV=production
CMD ["node", "dist/workers/main.js"]
