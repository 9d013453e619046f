import { registerDecorator, type ValidationOptions } from 'class-validator';

/** Why one string of an array is refused, or null when it is fine. */
export type ElementRule = (element: string) => string | null;

/** The key in a constraint's context under which its element rule travels to the error factory. */
export const ELEMENT_RULE = 'elementRule';

/**
 * Each string of an array passes `rule`. Its errors name the element and say why
 * (`filePaths[2]`: "path contains .."): the validation pipe expands them (validation.ts).
 * Elements that are not strings are left to `@IsString({ each: true })`.
 */
export function EachString(name: string, rule: ElementRule, describe: string, options?: ValidationOptions): PropertyDecorator {
  return (target, propertyKey) =>
    registerDecorator({
      name,
      target: target.constructor,
      propertyName: propertyKey as string,
      options: { message: `each of ${String(propertyKey)} ${describe}`, context: { [ELEMENT_RULE]: rule }, ...options },
      validator: {
        validate: (value: unknown) => !Array.isArray(value) || value.every((element) => typeof element !== 'string' || rule(element) === null),
      },
    });
}
