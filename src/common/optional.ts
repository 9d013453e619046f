import { ValidateIf, type ValidationOptions, registerDecorator } from 'class-validator';

/**
 * A field that may be left out, but not sent as `null` (docs/protocol.md, "Conventions": `null`
 * for a field that cannot be null is `400 validation_failed`, never an event). Left out, the
 * field's other validators are skipped; `null` runs them, and is refused here by name whatever
 * they say of it.
 *
 * class-validator's own `@IsOptional()` skips the validators for `null` as well, so a `null`
 * reached the services as if it were a value. Use it only where `null` means something by
 * contract (an organization's `maxConcurrency`: no limit).
 */
export function IsOmittable(options?: ValidationOptions): PropertyDecorator {
  return (target, propertyKey) => {
    ValidateIf((_, value) => value !== undefined, options)(target, propertyKey);
    registerDecorator({
      name: 'isNotNull',
      target: target.constructor,
      propertyName: propertyKey as string,
      options: { message: `${String(propertyKey)} must not be null (leave it out instead)`, ...options },
      validator: { validate: (value: unknown) => value !== null },
    });
  };
}
