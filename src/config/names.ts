/** The names the config file gives things (connections, roles, policies, static secrets). */
import { z } from 'zod';

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const NAME_RULE = 'must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit';
export const configName = z.string().regex(NAME_PATTERN, NAME_RULE);
