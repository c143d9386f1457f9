import type { EntityManager } from "@mikro-orm/postgresql";

/**
 * Runs one SQL statement with its parameters bound by the driver, on `em`'s
 * transaction when it has one. `em.execute` inlines parameters into the SQL
 * text instead, escaping each value in JavaScript: for a statement whose
 * parameter is a batch of messages as JSON (tens of KB, a hundred times a
 * second) that copy, and PostgreSQL lexing it as a literal, are work for
 * nothing. Placeholders are `?`, as for `em.execute`.
 */
export async function boundQuery<Row>(em: EntityManager, sql: string, params: readonly (string | number | boolean | null)[]): Promise<Row[]> {
  const runner = em.getTransactionContext<ReturnType<EntityManager["getKnex"]>>() ?? em.getKnex();
  const result = await runner.raw<{ rows: Row[] }>(sql, params);
  return result.rows;
}
