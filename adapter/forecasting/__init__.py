"""The forecast cycles in a process of their own (`worker`), supervised by the serving
process (`supervisor`), which receives each cycle's forecasts as a snapshot (`messages`):
requests never wait on a fit, and a fit never waits on the API's interpreter."""
