// Lookups of the page's fixed elements, failing loudly when the page and the
// script disagree, and a small element builder for the parts drawn later.

export function element(id: string): HTMLElement {
  const found = document.getElementById(id);
  if (!found) throw new Error(`missing #${id}`);
  return found;
}

export function input(id: string): HTMLInputElement {
  const found = element(id);
  if (!(found instanceof HTMLInputElement)) throw new Error(`#${id} is not an input`);
  return found;
}

export function select(id: string): HTMLSelectElement {
  const found = element(id);
  if (!(found instanceof HTMLSelectElement)) throw new Error(`#${id} is not a select`);
  return found;
}

export function form(id: string): HTMLFormElement {
  const found = element(id);
  if (!(found instanceof HTMLFormElement)) throw new Error(`#${id} is not a form`);
  return found;
}

/** `<tag>` with attributes (class, data-*, aria-*, ...) and children. */
export function make<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const created = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) created.setAttribute(name, value);
  created.append(...children);
  return created;
}

/** Calls `handler` with the trimmed value of `field` on submit, then empties the field; empty values are ignored. */
export function onSubmit(formId: string, field: HTMLInputElement, handler: (value: string) => void): void {
  form(formId).addEventListener("submit", (event) => {
    event.preventDefault();
    const value = field.value.trim();
    if (value === "") return;
    field.value = "";
    handler(value);
  });
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
