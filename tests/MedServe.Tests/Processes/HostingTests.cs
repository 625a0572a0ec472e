using MedServe.Tests.Support;

namespace MedServe.Tests.Processes;

/// <summary>The built node finds its own settings wherever it is started from.</summary>
public sealed class HostingTests
{
    [Fact]
    public async Task Started_from_another_working_directory_the_node_keeps_its_log_levels()
    {
        // NodeProcess starts the dll with the data directory as working directory: no appsettings.json there.
        // Without the program's own settings every request would be logged at Information ("Request starting ...").
        var data = Paths.TempDirectory("hosting");
        try
        {
            await using var node = await NodeProcess.StartAsync(data, "none", NodeProcess.FreePort(), NodeProcess.FreePort(), NodeProcess.FreePort());
            for (var i = 0; i < 5; i++)
            {
                using var response = await node.Http.GetAsync("/v2/health/ready");
                Assert.True(response.IsSuccessStatusCode, $"ready answered {(int)response.StatusCode}");
            }
            // Stopping waits for the process to exit and its output to be read to the end: no log line can come later.
            await node.StopGracefullyAsync();
            Assert.Contains("MedServe node ready", node.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("Request starting", node.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("Request finished", node.Output, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }
}
