import { Injectable } from '@nestjs/common';

/**
 * The time as the broker's services see it: injected, so tests can set it. (Conditions the database
 * decides, such as "expired" in a conditional update, use the database's clock.)
 */
export abstract class Clock {
  abstract now(): Date;
}

@Injectable()
export class SystemClock extends Clock {
  now(): Date {
    return new Date();
  }
}
