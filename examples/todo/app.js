// The example app: a todo list kept in sync with `weft serve` over its HTTP JSON API.
// Writes go out as one batch per action; a pull with the last cursor every 700 ms (and
// right after each write) brings other windows' changes. The offline-first browser
// client (@weft/client, WASM + IndexedDB) will replace this transport.

const COLLECTION = "todos";
const todos = new Map(); // id -> fields
let cursor = null;
let filter = "all";
let pulling = null;

const $ = (id) => document.getElementById(id);

async function sync(body) {
  const response = await fetch("/v1/sync", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(json.error ? `${json.error.name}: ${json.error.message}` : `HTTP ${response.status}`);
  }
  return json;
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

async function pull() {
  if (pulling) return pulling;
  pulling = (async () => {
    try {
      for (;;) {
        const { pulls } = await sync({ pulls: [{ collection: COLLECTION, cursor }] });
        const page = pulls[0];
        for (const record of page.records) {
          if (record.deleted) todos.delete(record.id);
          else todos.set(record.id, record.fields);
        }
        for (const id of page.removed) todos.delete(id);
        cursor = page.cursor;
        if (page.caught_up) break;
      }
      setStatus("synced", "ok");
      render();
    } catch (error) {
      setStatus("offline — retrying", "error");
      console.warn(error);
    } finally {
      pulling = null;
    }
  })();
  return pulling;
}

async function write(op, id, fields) {
  // Show the change at once; the server's answer confirms it durably.
  if (op === "delete") todos.delete(id);
  else todos.set(id, { ...(op === "update" ? todos.get(id) : {}), ...fields });
  render();
  try {
    setStatus("saving…", "");
    await sync({ writes: [{ collection: COLLECTION, id, op, fields }] });
    await pull();
  } catch (error) {
    setStatus(`not saved: ${error.message}`, "error");
  }
}

function render() {
  const all = [...todos.entries()].sort((a, b) => (a[1].created ?? 0) - (b[1].created ?? 0));
  const done = all.filter(([, t]) => t.done === true);
  $("count-all").textContent = all.length;
  $("count-active").textContent = all.length - done.length;
  $("count-done").textContent = done.length;
  const shown = all.filter(([, t]) => filter === "all" || (filter === "done") === (t.done === true));
  const list = $("list");
  list.replaceChildren(
    ...shown.map(([id, todo]) => {
      const item = document.createElement("li");
      item.className = todo.done ? "done" : "";
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = todo.done === true;
      box.addEventListener("change", () => write("update", id, { done: box.checked }));
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = String(todo.title ?? "");
      label.append(box, title);
      const remove = document.createElement("button");
      remove.className = "delete";
      remove.title = "Delete";
      remove.textContent = "×";
      remove.addEventListener("click", () => write("delete", id));
      item.append(label, remove);
      return item;
    }),
  );
  $("empty").hidden = shown.length > 0;
}

$("new").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("title");
  const title = input.value.trim();
  if (!title) return;
  input.value = "";
  write("put", crypto.randomUUID(), { title, done: false, created: Date.now() });
});

for (const button of document.querySelectorAll(".filters button")) {
  button.addEventListener("click", () => {
    filter = button.dataset.filter;
    for (const other of document.querySelectorAll(".filters button")) other.classList.toggle("active", other === button);
    render();
  });
}

render();
pull();
setInterval(pull, 700);
