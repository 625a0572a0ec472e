using System.Globalization;
using System.Runtime.InteropServices;

namespace MedServe.Bench;

/// <summary>
/// CPU time a server process has used (user + system, all its threads), from <c>/proc/&lt;pid&gt;/stat</c> fields 14 and 15
/// (utime, stime) in clock ticks. Read at the start and the end of a measured window; the difference over the requests
/// answered in it is the server's CPU per request. Linux only: elsewhere it reads null and the columns stay empty.
/// </summary>
internal static class ProcessCpu
{
    private const int ScClkTck = 2; // _SC_CLK_TCK on Linux (glibc and musl)

    private static readonly Lazy<double> TicksPerSecond = new(() =>
    {
        try
        {
            var t = (long)Sysconf(ScClkTck);
            return t > 0 ? t : 100;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return 100;
        }
    });

    /// <summary>Clock ticks per second (<c>sysconf(_SC_CLK_TCK)</c>; 100 on Linux): one tick is the resolution of a reading.</summary>
    public static double Hz => TicksPerSecond.Value;

    /// <summary>utime + stime of <paramref name="pid"/> in seconds, or null where it cannot be read (not Linux, process gone).</summary>
    public static double? ReadSeconds(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        // Field 2 (comm) is in parentheses and may hold spaces: count fields from the last ')', where field 3 starts.
        var close = stat.LastIndexOf(')');
        if (close < 0)
        {
            return null;
        }
        var fields = stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        const int first = 3, utime = 14, stime = 15;
        if (fields.Length <= stime - first
            || !long.TryParse(fields[utime - first], NumberStyles.None, CultureInfo.InvariantCulture, out var u)
            || !long.TryParse(fields[stime - first], NumberStyles.None, CultureInfo.InvariantCulture, out var s))
        {
            return null;
        }
        return (u + s) / Hz;
    }

    [DllImport("libc", EntryPoint = "sysconf")]
    private static extern nint Sysconf(int name); // C long: 64 bits on 64-bit Linux, 32 on 32-bit
}
