import { mount } from 'svelte';
import App from './App.svelte';
import Observer from './observer/Observer.svelte';
import './app.css';

const target = document.getElementById('app');
if (target === null) throw new Error('index.html has no #app element');

/** Two pages in one build: the chat, and the observer at /observer. */
const isObserver = location.pathname === '/observer';

export default isObserver ? mount(Observer, { target }) : mount(App, { target });
