/** Entry point of the web inbox bundle. */
import { render } from 'preact';
import { App } from './components/App';
import { filterFromUrl, prefetchInbox } from './inbox-data';
import './styles.css';

// The inbox listing does not wait for `/v1/me`: both requests leave together.
if (location.pathname === '/') prefetchInbox(filterFromUrl(location.search));
render(<App />, document.getElementById('app')!);
