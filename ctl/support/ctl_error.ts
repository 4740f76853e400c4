/**
 * How florctl fails, the one way: a command returns nothing (or its data) when it succeeds
 * and throws a CtlError when it does not; ctl/main.ts turns the error into stderr and the
 * process's exit code in one place. What each code means and what stderr then holds is the
 * table in README.md, "florctl exit codes"; tests/ctl/main_test.ts pins it.
 */

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;

export interface CtlErrorOptions {
  /** The process's exit code; EXIT_FAILED unless said otherwise. */
  exitCode?: number;
  /** The command has already printed why (its report, table or problem list), so main
   * prints nothing more; the message then only summarizes it for code that catches it. */
  reported?: boolean;
}

export class CtlError extends Error {
  override name = "CtlError";
  readonly exitCode: number;
  readonly reported: boolean;
  constructor(message: string, o: CtlErrorOptions = {}) {
    super(message);
    this.exitCode = o.exitCode ?? EXIT_FAILED;
    this.reported = o.reported ?? false;
  }
}
