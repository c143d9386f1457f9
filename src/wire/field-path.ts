/**
 * A dotted path of proto field names as errors name it (`history.direction`,
 * `items[2].kind`), one level up: `segment` (a field name or an index such
 * as `[2]`) before `path`, the part below it ("" for the value itself).
 */
export function underSegment(segment: string, path: string): string {
  if (path === "") return segment;
  return path.startsWith("[") ? `${segment}${path}` : `${segment}.${path}`;
}
