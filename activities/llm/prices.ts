/**
 * The price table, for the model clients: it lives in `domain/` because the API checks models against it at intake.
 */
export * from '../../domain/prices';
