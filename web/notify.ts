/** Opt-in browser notifications for new items (the Notification API; the choice is kept in localStorage). */

const KEY = 'agent-inbox.notify';

/** True when the person opted in and the browser allows it. */
export function notificationsOn(): boolean {
  return typeof Notification !== 'undefined' && Notification.permission === 'granted' && localStorage.getItem(KEY) === 'on';
}

/** Asks for permission and records the opt-in; resolves to whether notifications are now on. */
export async function enableNotifications(): Promise<boolean> {
  if (typeof Notification === 'undefined') return false;
  const p = await Notification.requestPermission();
  if (p !== 'granted') return false;
  localStorage.setItem(KEY, 'on');
  return true;
}

/** Turns the opt-in off. */
export function disableNotifications(): void {
  localStorage.removeItem(KEY);
}

/** Shows a notification for a new item when opted in. */
export function notifyNewItem(title: string, body: string, onClick: () => void): void {
  if (!notificationsOn()) return;
  const n = new Notification(title, { body, tag: title });
  n.onclick = () => {
    window.focus();
    onClick();
  };
}
