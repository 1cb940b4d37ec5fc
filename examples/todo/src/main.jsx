import { createRoot } from 'react-dom/client';
import { Weft } from '@weft/client';
import { WeftProvider } from '@weft/client/react';

import { App } from './App.jsx';
import './style.css';

// The app shell works offline once the service worker has cached it.
if ('serviceWorker' in navigator) {
  navigator.serviceWorker
    .register('/sw.js')
    .then(() => navigator.serviceWorker.ready)
    .then(() => (document.documentElement.dataset.offlineReady = 'true'))
    .catch((error) => console.warn('offline shell unavailable:', error));
}

const db = await Weft.open({ url: location.origin, name: 'todo-example' });
// For tests and the curious: the database handle in the console.
window.weft = db;

createRoot(document.getElementById('root')).render(
  <WeftProvider db={db}>
    <App />
  </WeftProvider>,
);
