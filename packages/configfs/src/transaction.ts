import { ConfigfsError, RollbackError } from './errors.js';

interface UndoStep {
  readonly describe: string;
  readonly run: () => Promise<unknown>;
}

/** Undo log of one multi-step creation: replayed in reverse when a step fails. */
export class Transaction {
  private readonly steps: UndoStep[] = [];

  add(describe: string, run: () => Promise<unknown>): void {
    this.steps.push({ describe, run });
  }

  async rollback(): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (const step of this.steps.reverse()) {
      try {
        await step.run();
      } catch (error) {
        errors.push(
          new ConfigfsError('ROLLBACK_STEP', `rollback: ${step.describe} failed`, { cause: error }),
        );
      }
    }
    return errors;
  }
}

/** Runs `body`; on failure rolls back its steps and rethrows (a RollbackError if undoing failed too). */
export async function transaction<T>(what: string, body: (tx: Transaction) => Promise<T>): Promise<T> {
  const tx = new Transaction();
  try {
    return await body(tx);
  } catch (error) {
    const rollbackErrors = await tx.rollback();
    if (rollbackErrors.length > 0) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new RollbackError(
        `${what} failed (${reason}) and ${rollbackErrors.length} rollback step(s) failed too`,
        error,
        rollbackErrors,
      );
    }
    throw error;
  }
}
