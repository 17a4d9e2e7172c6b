/** Entry point of the web inbox bundle. */
import { render } from 'preact';
import { App, prefetchMe } from './components/App';
import { filterFromUrl, prefetchInbox } from './inbox-data';
import './styles.css';

// Neither read waits for the first render, nor the inbox listing for `/v1/me`: they leave together (and
// index.html names both as preloads, so the browser has usually started them before this runs).
prefetchMe();
if (location.pathname === '/') prefetchInbox(filterFromUrl(location.search));
render(<App />, document.getElementById('app')!);
