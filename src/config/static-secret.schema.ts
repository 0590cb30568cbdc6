/** The config schema of a static secret (DESIGN §4): an existing account Tessera owns and rotates. */
import { z } from 'zod';
import { duration } from '../../plugins/contract';
import { configName as name } from './names';

const cronProblem = (expr: string): string | undefined => {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('cron-parser').parseExpression(expr, { utc: true });
    return undefined;
  } catch (err) {
    return `invalid cron expression: ${(err as Error).message}`;
  }
};

export const staticSecretSchema = z
  .object({
    connection: name,
    /** A database user; MySQL accounts are "name" (host %) or "name@host". */
    username: z.string().min(1).max(128).optional(),
    /** Two existing accounts for the alternating strategy. */
    usernames: z.array(z.string().min(1).max(128)).length(2).optional(),
    iam_user: z.string().regex(/^[\w+=,.@-]{1,64}$/, 'must be an IAM user name').optional(),
    strategy: z.enum(['single', 'alternating']).optional(),
    rotate_every: duration().optional(),
    rotate_cron: z
      .string()
      .min(1)
      .superRefine((expr, ctx) => {
        const problem = cronProblem(expr);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    /** Rotations on cadence start only inside this UTC window, e.g. "02:00-05:00". */
    window: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$/, 'must be "HH:MM-HH:MM" (UTC)').optional(),
    /** How long the previous secret keeps working after a rotation. */
    grace: duration({ min: 0 }).default(3600),
    /** The account's current password, to import instead of rotating at registration (use ${VAR}). */
    password: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    const kinds = [s.username, s.usernames, s.iam_user].filter((v) => v !== undefined).length;
    if (kinds !== 1) ctx.addIssue({ code: 'custom', message: 'give exactly one of username, usernames (alternating) or iam_user' });
    const strategy = s.strategy ?? (s.usernames ? 'alternating' : 'single');
    if (strategy === 'alternating' && !s.usernames) ctx.addIssue({ code: 'custom', path: ['usernames'], message: 'alternating needs usernames: [a, b]' });
    if (strategy === 'single' && s.usernames) ctx.addIssue({ code: 'custom', path: ['strategy'], message: 'usernames: [a, b] needs strategy: alternating' });
    if (s.rotate_every !== undefined && s.rotate_cron !== undefined) ctx.addIssue({ code: 'custom', message: 'give rotate_every or rotate_cron, not both' });
    if (s.usernames && s.usernames[0] === s.usernames[1]) ctx.addIssue({ code: 'custom', path: ['usernames'], message: 'the two accounts must differ' });
    if (s.password && s.iam_user) ctx.addIssue({ code: 'custom', path: ['password'], message: 'IAM keys are not imported; Tessera makes the first key' });
  });

