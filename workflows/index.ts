/**
 * Entry point of the workflow bundle: every workflow type the worker registers.
 */
export { taskWorkflow } from './task';
export { notificationWorkflow } from './notify';
