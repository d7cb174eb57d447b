/**
 * Where the hub is, who we are on it and where its files are cached, resolved the way Python's
 * huggingface_hub does it, so both tools share one cache and one login:
 * option > HF_ENDPOINT / HF_TOKEN / HF_HUB_CACHE / HF_HUB_OFFLINE > defaults.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubSettingsOptions { endpoint?: string; token?: string; cacheDir?: string; offline?: boolean }
export interface HubSettings { endpoint: string; token: string | undefined; cacheDir: string; offline: boolean }

export function hubSettings(options: HubSettingsOptions = {}, env: NodeJS.ProcessEnv = process.env): HubSettings {
  return {
    endpoint: (options.endpoint ?? nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token: options.token ?? nonEmpty(env.HF_TOKEN) ?? nonEmpty(env.HUGGING_FACE_HUB_TOKEN) ?? storedToken(env),
    cacheDir: path.resolve(expandHome(options.cacheDir ?? hubCacheDir(env))),
    offline: options.offline === true || isTruthy(env.HF_HUB_OFFLINE),
  };
}

/** HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE) ?? path.join(hfHome(env), 'hub');
}

function hfHome(env: NodeJS.ProcessEnv): string {
  return expandHome(nonEmpty(env.HF_HOME) ?? path.join(nonEmpty(env.XDG_CACHE_HOME) ?? path.join(homedir(), '.cache'), 'huggingface'));
}

/** The token `huggingface-cli login` saved (HF_TOKEN_PATH, else $HF_HOME/token). */
function storedToken(env: NodeJS.ProcessEnv): string | undefined {
  const file = expandHome(nonEmpty(env.HF_TOKEN_PATH) ?? path.join(hfHome(env), 'token'));
  return existsSync(file) ? nonEmpty(readFileSync(file, 'utf8').trim()) : undefined;
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(homedir(), p.slice(1)) : p;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value.trim() !== '' ? value.trim() : undefined;
}

function isTruthy(value: string | undefined): boolean {
  return ['1', 'true', 'yes', 'on'].includes((value ?? '').trim().toLowerCase());
}
