using MedServe.Grains.Storage;
using MedServe.Tests.Support;
using Orleans.Storage;

namespace MedServe.Tests.Unit;

public sealed class FileGrainStorageTests
{
    private sealed class Holder<T> : IGrainState<T>
    {
        [System.Diagnostics.CodeAnalysis.AllowNull]
        public T State { get; set; } = default!;
        public string? ETag { get; set; }
        public bool RecordExists { get; set; }
    }

    [Fact]
    public async Task State_round_trips_and_a_stale_writer_is_refused()
    {
        var dir = Paths.TempDirectory("storage");
        try
        {
            var storage = new FileGrainStorage(dir);
            var id = GrainId.Create("model", "breast-cancer-logreg");
            var first = new Holder<Dictionary<string, int>> { State = new() { ["a"] = 1 } };
            await storage.WriteStateAsync("s", id, first);

            var read = new Holder<Dictionary<string, int>>();
            await storage.ReadStateAsync("s", id, read);
            Assert.True(read.RecordExists);
            Assert.Equal(1, read.State["a"]);

            read.State["a"] = 2;
            await storage.WriteStateAsync("s", id, read);
            first.State["a"] = 3; // an activation that missed the write above
            await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("s", id, first));

            Assert.Empty(Directory.GetFiles(dir, "*.tmp", SearchOption.AllDirectories));
            await storage.ClearStateAsync("s", id, read);
            var gone = new Holder<Dictionary<string, int>>();
            await storage.ReadStateAsync("s", id, gone);
            Assert.False(gone.RecordExists);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
    [Fact]
    public async Task A_write_by_another_storage_on_the_same_directory_is_seen_and_a_stale_writer_still_refused()
    {
        var dir = Paths.TempDirectory("storage");
        try
        {
            // Two storages over one directory, as the silos of one test host share it: each remembers the ETags it
            // wrote, and must not trust that memory once the other has written the file.
            var (a, b) = (new FileGrainStorage(dir), new FileGrainStorage(dir));
            var id = GrainId.Create("model", "shared");
            var viaA = new Holder<Dictionary<string, int>> { State = new() { ["a"] = 1 } };
            await a.WriteStateAsync("s", id, viaA);
            var viaB = new Holder<Dictionary<string, int>>();
            await b.ReadStateAsync("s", id, viaB);
            viaB.State["a"] = 2;
            await b.WriteStateAsync("s", id, viaB);

            viaA.State["a"] = 3; // A's activation missed B's write
            await Assert.ThrowsAsync<InconsistentStateException>(() => a.WriteStateAsync("s", id, viaA));
            var now = new Holder<Dictionary<string, int>>();
            await a.ReadStateAsync("s", id, now);
            Assert.Equal(2, now.State["a"]);
            now.State["a"] = 4;
            await a.WriteStateAsync("s", id, now); // with the ETag it just read: accepted
            await b.ReadStateAsync("s", id, viaB);
            Assert.Equal(4, viaB.State["a"]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
