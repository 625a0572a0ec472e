using System.Diagnostics;

namespace MedServe.Tests.Support;

/// <summary>
/// A real redis-server on a free loopback port; stopped (and its data directory removed) when disposed.
/// By default nothing is persisted; <see cref="StartPersistentAsync"/> keeps an append-only file that is
/// synced on every write, as the README tells operators to run it, so a kill -9 and restart loses nothing.
/// </summary>
public sealed class RedisProcess : IAsyncDisposable
{
    private readonly string? _dataDirectory;
    private Process _process;

    private RedisProcess(Process process, int port, string? dataDirectory)
    {
        _process = process;
        Port = port;
        _dataDirectory = dataDirectory;
    }

    public int Port { get; }

    public string Url => $"redis://127.0.0.1:{Port}";

    public static async Task<RedisProcess> StartAsync()
    {
        var port = NodeProcess.FreePort();
        return new RedisProcess(await LaunchAsync(port, null), port, null);
    }

    /// <summary>Membership and grain state survive a restart: <c>--appendonly yes --appendfsync always</c> in a data directory of its own.</summary>
    public static async Task<RedisProcess> StartPersistentAsync()
    {
        var port = NodeProcess.FreePort();
        var data = Paths.TempDirectory("redis");
        return new RedisProcess(await LaunchAsync(port, data), port, data);
    }

    /// <summary><c>kill -9</c>: Redis vanishes mid-conversation, as in a crash or a node loss.</summary>
    public async Task KillAsync()
    {
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    /// <summary>Starts redis-server again on the same port and data directory (after <see cref="KillAsync"/>).</summary>
    public async Task RestartAsync()
    {
        _process.Dispose();
        _process = await LaunchAsync(Port, _dataDirectory);
    }

    private static async Task<Process> LaunchAsync(int port, string? dataDirectory)
    {
        List<string> args = ["--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", ""];
        args.AddRange(dataDirectory is null
            ? ["--appendonly", "no"]
            : ["--appendonly", "yes", "--appendfsync", "always", "--dir", dataDirectory]);
        var start = new ProcessStartInfo("redis-server", args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("redis-server is not installed: ./test.sh installs it (apt-get install redis-server)", e);
        }
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data?.Contains("Ready to accept connections", StringComparison.Ordinal) == true)
            {
                ready.TrySetResult();
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (await Task.WhenAny(ready.Task, process.WaitForExitAsync(), Task.Delay(TimeSpan.FromSeconds(30))) != ready.Task)
        {
            process.Kill();
            throw new InvalidOperationException($"redis-server did not start on port {port}");
        }
        return process;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
        if (_dataDirectory is not null)
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }
}
