import { ValidationPipe, type ValidationError as ClassValidationError } from '@nestjs/common';
import { ValidationError } from '../../common/errors';
import { ELEMENT_RULE, type ElementRule } from './each-element';

type FieldError = { field: string; message: string };

/**
 * The refused fields, each named by its path: `spec`, and inside arrays of objects by index,
 * `jobs[3].cmd`. A nested field's message starts with its path (class-validator's starts with
 * the property's own name).
 */
function flatten(errors: ClassValidationError[], parent = ''): FieldError[] {
  return errors.flatMap((error) => {
    const field = parent === '' ? error.property : /^\d+$/.test(error.property) ? `${parent}[${error.property}]` : `${parent}.${error.property}`;
    const own = Object.entries(error.constraints ?? {}).flatMap(([constraint, text]) => {
      const rule = (error.contexts?.[constraint] as Record<string, ElementRule | undefined> | undefined)?.[ELEMENT_RULE];
      const elements = rule !== undefined && Array.isArray(error.value) ? elementErrors(field, error.value, rule) : [];
      const message = parent === '' ? text : nestedMessage(text, error.property, field);
      return elements.length > 0 ? elements : [{ field, message }];
    });
    return [...own, ...flatten(error.children ?? [], field)];
  });
}

/** class-validator's message names the property alone ("cmd must ...", "property cmd should not exist"): name its path. */
function nestedMessage(text: string, property: string, field: string): string {
  if (text.startsWith(`${property} `)) return `${field}${text.slice(property.length)}`;
  if (text.startsWith(`property ${property} `)) return `${field}${text.slice(`property ${property}`.length)}`;
  return `${field}: ${text}`;
}

/** One error per refused element of an array, named by its index: `filePaths[2]`. */
function elementErrors(field: string, values: unknown[], rule: ElementRule): FieldError[] {
  return values.flatMap((value, i) => {
    const why = typeof value === 'string' ? rule(value) : null;
    return why === null ? [] : [{ field: `${field}[${i}]`, message: `${field}[${i}] is refused: ${why}` }];
  });
}

/** Request bodies and queries: unknown fields are refused, types are checked, nothing is coerced silently. */
export function validationPipe(): ValidationPipe {
  return new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    forbidUnknownValues: true,
    // The value is kept for naming the refused elements of arrays (EachString), never shown.
    validationError: { target: false, value: true },
    exceptionFactory: (errors) => {
      const fields = flatten(errors);
      return new ValidationError(
        fields.length > 0 ? fields.map((f) => f.message).join('; ') : 'the request is not valid',
        fields,
      );
    },
  });
}
