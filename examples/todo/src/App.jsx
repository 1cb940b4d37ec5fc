import { useState } from 'react';
import { useQuery, useSyncStatus, useWeft } from '@weft/client/react';

const FILTERS = {
  all: {},
  active: { where: { eq: { done: false } } },
  done: { where: { eq: { done: true } } },
};

function newId() {
  return `${Date.now().toString(36)}-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`;
}

function StatusPill() {
  const status = useSyncStatus();
  const labels = {
    connecting: 'Connecting…',
    connected: 'Synced',
    syncing: 'Syncing…',
    offline: 'Offline',
    error: status.codeName ? `Error: ${status.codeName}` : 'Error',
  };
  const pending = status.pendingWrites > 0 ? ` · ${status.pendingWrites} unsent` : '';
  return (
    <span className={`status ${status.state}`} data-testid="status" data-state={status.state} title={status.message ?? ''}>
      <span className="dot" aria-hidden="true" />
      {labels[status.state]}
      {pending}
    </span>
  );
}

function TodoItem({ todo }) {
  const todos = useWeft().collection('todos');
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(todo.title);
  const save = () => {
    const title = draft.trim();
    if (title && title !== todo.title) todos.update(todo.id, { title });
    setEditing(false);
  };
  return (
    <li className={todo.done ? 'done' : ''} data-testid="todo" data-id={todo.id}>
      <input
        type="checkbox"
        checked={!!todo.done}
        aria-label={`Complete ${todo.title}`}
        onChange={() => todos.update(todo.id, { done: !todo.done })}
      />
      {editing ? (
        <input
          className="edit"
          autoFocus
          value={draft}
          maxLength={200}
          onChange={(e) => setDraft(e.target.value)}
          onBlur={save}
          onKeyDown={(e) => {
            if (e.key === 'Enter') save();
            if (e.key === 'Escape') setEditing(false);
          }}
        />
      ) : (
        <span className="title" data-testid="title" onDoubleClick={() => (setDraft(todo.title), setEditing(true))}>
          {todo.title}
        </span>
      )}
      <button className="delete" aria-label={`Delete ${todo.title}`} onClick={() => todos.delete(todo.id)}>
        ×
      </button>
    </li>
  );
}

export function App() {
  const db = useWeft();
  const todos = db.collection('todos');
  const [filter, setFilter] = useState('all');
  const [title, setTitle] = useState('');
  const shown = useQuery('todos', { ...FILTERS[filter], orderBy: 'created' });
  const counts = {
    all: useQuery('todos', { select: ['done'] }).length,
    active: useQuery('todos', { ...FILTERS.active, select: ['done'] }).length,
    done: useQuery('todos', { ...FILTERS.done, select: ['done'] }).length,
  };

  const add = (event) => {
    event.preventDefault();
    const text = title.trim();
    if (!text) return;
    todos.put(newId(), { title: text, done: false, created: Date.now() });
    setTitle('');
  };

  const clearDone = async () => {
    for (const todo of await todos.query(FILTERS.done)) todos.delete(todo.id);
  };

  return (
    <main className="card">
      <header>
        <h1>Todos</h1>
        <StatusPill />
      </header>
      <form onSubmit={add}>
        <input
          name="title"
          data-testid="new-title"
          placeholder="What needs doing?"
          autoComplete="off"
          maxLength={200}
          value={title}
          onChange={(e) => setTitle(e.target.value)}
        />
        <button type="submit">Add</button>
      </form>
      <nav className="filters" aria-label="Filter">
        {Object.keys(FILTERS).map((name) => (
          <button
            key={name}
            className={filter === name ? 'active' : ''}
            data-testid={`filter-${name}`}
            onClick={() => setFilter(name)}
          >
            {name[0].toUpperCase() + name.slice(1)} <span data-testid={`count-${name}`}>{counts[name]}</span>
          </button>
        ))}
        {counts.done > 0 && (
          <button className="clear" onClick={clearDone}>
            Clear completed
          </button>
        )}
      </nav>
      <ul aria-live="polite">
        {shown.map((todo) => (
          <TodoItem key={todo.id} todo={todo} />
        ))}
      </ul>
      {shown.length === 0 && <p className="empty">{filter === 'all' ? 'Nothing here yet.' : `No ${filter} todos.`}</p>}
      <footer>
        Works offline: changes are kept in this browser and sync when the connection returns. Open a second
        window to watch them appear live. Double-click a todo to edit it.
      </footer>
    </main>
  );
}
