import { Logger } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';

/**
 * A periodic sweep registered with @nestjs/schedule: it runs once at start (recovery should not wait
 * an interval), then every `everySeconds`, never two runs at once, and a failed run only logs (the
 * next one retries).
 */
export class Ticker {
  private running = false;

  constructor(
    private readonly scheduler: SchedulerRegistry,
    private readonly name: string,
    private readonly log: Logger,
  ) {}

  start(everySeconds: number, tick: () => Promise<unknown>): void {
    const run = async () => {
      if (this.running) return;
      this.running = true;
      try {
        await tick();
      } catch (err) {
        this.log.warn(`${this.name} failed (the next run retries): ${(err as Error).message}`);
      } finally {
        this.running = false;
      }
    };
    this.scheduler.addInterval(this.name, setInterval(() => void run(), everySeconds * 1000));
    setImmediate(() => void run());
  }

  stop(): void {
    if (this.scheduler.doesExist('interval', this.name)) this.scheduler.deleteInterval(this.name);
  }
}
