import { registerDecorator, type ValidationOptions } from 'class-validator';

/** Slugs: lower-case letters, digits and dashes, 1..64, starting with a letter or digit. */
export const SLUG_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/;

/**
 * Text PostgreSQL can store: JSONB and text refuse U+0000, so it is refused here with a clear
 * error instead of failing in the database.
 */
export function NoNullCharacters(options?: ValidationOptions): PropertyDecorator {
  return (target, propertyKey) =>
    registerDecorator({
      name: 'noNullCharacters',
      target: target.constructor,
      propertyName: propertyKey as string,
      options: { message: `${String(propertyKey)} must not contain NUL characters`, ...options },
      validator: {
        validate: (value: unknown) => !containsNul(value),
      },
    });
}

function containsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (Array.isArray(value)) return value.some(containsNul);
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(([k, v]) => k.includes('\u0000') || containsNul(v));
  }
  return false;
}

/** A map of string to string with at most `maxEntries` entries and names like environment variables. */
export function IsEnvMap(maxEntries: number, options?: ValidationOptions): PropertyDecorator {
  return (target, propertyKey) =>
    registerDecorator({
      name: 'isEnvMap',
      target: target.constructor,
      propertyName: propertyKey as string,
      options: {
        message: `${String(propertyKey)} must be an object of at most ${maxEntries} NAME: "value" strings, names of letters, digits and _ not starting with a digit`,
        ...options,
      },
      validator: {
        validate: (value: unknown) =>
          value !== null &&
          typeof value === 'object' &&
          !Array.isArray(value) &&
          Object.keys(value).length <= maxEntries &&
          Object.entries(value).every(([k, v]) => /^[A-Za-z_][A-Za-z0-9_]{0,255}$/.test(k) && typeof v === 'string'),
      },
    });
}
