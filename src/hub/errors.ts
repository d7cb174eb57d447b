/**
 * Turns what the hub client throws into one-line TritpackErrors that say what happened and what to
 * do, with any token scrubbed out: a token must never reach a terminal, a log or a report.
 */
import { HubApiError } from '@huggingface/hub';
import { TritpackError } from '../errors.js';

const TOKEN_LIKE = /\bhf_[A-Za-z0-9]{6,}\b/g;

/** Removes the token, and anything shaped like a hub token, from text. */
export function redact(text: string, token?: string): string {
  const scrubbed = token ? text.split(token).join('hf_***') : text;
  return scrubbed.replace(TOKEN_LIKE, 'hf_***');
}

export interface HubErrorContext { repo: string; endpoint: string; token?: string; action: 'read' | 'write' }

export function hubError(err: unknown, ctx: HubErrorContext): TritpackError {
  if (err instanceof TritpackError) return new TritpackError(redact(err.message, ctx.token), { exitCode: err.exitCode });
  const where = `${ctx.repo} on ${ctx.endpoint}`;
  let message: string;
  if (err instanceof HubApiError) {
    const said = serverSaid(err);
    switch (err.statusCode) {
      case 401:
        message = ctx.token
          ? `401 Unauthorized for ${where}: the token was refused (${said}); check --token / HF_TOKEN`
          : `401 Unauthorized for ${where}: the repo does not exist, or is private or gated (${said}); if it is yours, pass a token with --token or HF_TOKEN`;
        break;
      case 403:
        message = `403 Forbidden for ${where}: the token has no ${ctx.action} access (${said})`;
        break;
      case 404:
        message = `404 Not Found: ${where} (${said}); check the repo id and revision${ctx.action === 'write' ? ', or pass --create' : ''}`;
        break;
      default:
        message = `the hub answered ${err.statusCode} for ${where} (${said})${err.statusCode >= 500 ? '; try again later' : ''}`;
    }
  } else if (isFileSystemError(err)) {
    // Local trouble (a full disk, a cache path that is not a directory) is not the hub's: name the file.
    message = `cannot ${err.syscall} ${err.path} in the hub cache (${err.code})`;
  } else if (err instanceof TypeError && /access token must start with/.test(err.message)) {
    message = 'the token is not a Hugging Face access token (those start with hf_)';
  } else {
    message = `cannot reach ${ctx.endpoint} for ${ctx.repo}: ${describeNetworkError(err)}`;
  }
  return new TritpackError(redact(message, ctx.token), { cause: err });
}

function isFileSystemError(err: unknown): err is NodeJS.ErrnoException & { path: string; syscall: string } {
  const e = err as NodeJS.ErrnoException;
  return err instanceof Error && typeof e.code === 'string' && typeof e.syscall === 'string' && typeof e.path === 'string';
}

/** The hub's own explanation, without the URL trailer the client appends. */
function serverSaid(err: HubApiError): string {
  return err.message.replace(/\.?\s*URL: \S+.*$/, '').trim() || `HTTP ${err.statusCode}`;
}

export function describeNetworkError(err: unknown): string {
  if (typeof err === 'string') return err;
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  const code = cause && typeof cause === 'object' && 'code' in cause ? String((cause as { code: unknown }).code) : undefined;
  const causeMessage = cause instanceof Error ? cause.message : undefined;
  return [err.message, code ?? causeMessage].filter(Boolean).join(': ');
}
