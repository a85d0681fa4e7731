// A task module for the CLI test (test/cli.test.js): registered through the package's `task`.
import { task } from '../src/index.js';

task('test.cli.Hello', async (ctx, props) => {
  ctx.log.info(`hello ${props.name}`);
  return { greeting: `hello ${props.name}`, attempt: ctx.attempt };
});

task('test.cli.Slow', async (ctx) => {
  await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
  throw new Error(`stopped: ${ctx.signal.reason}`);
});
